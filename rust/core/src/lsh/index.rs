//! The incremental index: insert, replace, remove and query documents by key.

use super::params::{band_hash, check_num_perm, LshParams};
use crate::fingerprint::FingerprintConfig;
use crate::minhash::{estimated_jaccard, is_empty_signature};
use crate::CoreError;
use std::collections::HashMap;

// ---------------------------------------------------------------------------
// Incremental index
// ---------------------------------------------------------------------------

/// A match from [`LshIndex::query`].
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub key: String,
    pub similarity: f64,
}

/// An incremental LSH index keyed by document id, saved to and loaded from a file.
///
/// Documents live in slots; a removed document's slot goes on a free list and
/// is reused. Band tables map a band hash to the slots in that bucket and are
/// rebuilt on load rather than stored.
pub struct LshIndex {
    pub(super) config: FingerprintConfig,
    pub(super) params: LshParams,
    /// Key per slot; `None` for a free slot.
    pub(super) keys: Vec<Option<String>>,
    /// `num_perm` values per slot.
    pub(super) sigs: Vec<u32>,
    pub(super) slot_of: HashMap<String, u32>,
    pub(super) free: Vec<u32>,
    pub(super) bands: Vec<HashMap<u64, Vec<u32>>>,
}

pub(super) fn check_config(config: &FingerprintConfig) -> crate::Result<()> {
    check_num_perm(config.num_perm)?;
    let size = config.shingles.size();
    if size == 0 || size > 64 {
        return Err(CoreError::invalid(format!("shingle size must be in 1..=64, got {size}")));
    }
    Ok(())
}

impl LshIndex {
    pub fn new(config: FingerprintConfig, params: LshParams) -> crate::Result<Self> {
        check_config(&config)?;
        params.validate(config.num_perm)?;
        Ok(LshIndex {
            config,
            params,
            keys: Vec::new(),
            sigs: Vec::new(),
            slot_of: HashMap::new(),
            free: Vec::new(),
            bands: vec![HashMap::new(); params.bands],
        })
    }
    pub fn config(&self) -> &FingerprintConfig {
        &self.config
    }
    pub fn params(&self) -> LshParams {
        self.params
    }
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn contains(&self, key: &str) -> bool {
        self.slot_of.contains_key(key)
    }

    pub(super) fn sig(&self, slot: u32) -> &[u32] {
        let k = self.config.num_perm;
        &self.sigs[slot as usize * k..][..k]
    }

    fn check_signature(&self, signature: &[u32]) -> crate::Result<()> {
        if signature.len() != self.config.num_perm {
            return Err(CoreError::invalid(format!(
                "signature must have num_perm = {} values, got {}",
                self.config.num_perm,
                signature.len()
            )));
        }
        Ok(())
    }

    /// Band hashes of a signature, or none for an empty one (which never matches).
    fn band_hashes(&self, signature: &[u32]) -> Vec<u64> {
        if is_empty_signature(signature) {
            return Vec::new();
        }
        (0..self.params.bands).map(|b| band_hash(signature, b, self.params.rows)).collect()
    }

    fn unlink_bands(&mut self, slot: u32) {
        let hashes = self.band_hashes(self.sig(slot));
        for (table, h) in self.bands.iter_mut().zip(hashes) {
            if let Some(bucket) = table.get_mut(&h) {
                if let Some(pos) = bucket.iter().position(|&s| s == slot) {
                    bucket.swap_remove(pos);
                }
                if bucket.is_empty() {
                    table.remove(&h);
                }
            }
        }
    }

    /// Inserts or replaces the signature stored under `key`.
    pub fn insert(&mut self, key: &str, signature: &[u32]) -> crate::Result<()> {
        self.check_signature(signature)?;
        if u32::try_from(key.len()).is_err() {
            return Err(CoreError::invalid(format!("key must be shorter than 4 GiB, got {} bytes", key.len())));
        }
        let slot = match self.slot_of.get(key) {
            Some(&slot) => {
                self.unlink_bands(slot);
                slot
            }
            None => {
                let slot = match self.free.pop() {
                    Some(slot) => slot,
                    None => {
                        let slot = u32::try_from(self.keys.len())
                            .map_err(|_| CoreError::invalid("the LSH index is full (2^32 documents)"))?;
                        self.keys.push(None);
                        self.sigs.resize(self.sigs.len() + self.config.num_perm, 0);
                        slot
                    }
                };
                self.keys[slot as usize] = Some(key.to_owned());
                self.slot_of.insert(key.to_owned(), slot);
                slot
            }
        };
        let k = self.config.num_perm;
        self.sigs[slot as usize * k..][..k].copy_from_slice(signature);
        let hashes = self.band_hashes(signature);
        for (table, h) in self.bands.iter_mut().zip(hashes) {
            table.entry(h).or_default().push(slot);
        }
        Ok(())
    }

    /// Removes `key`; returns whether it was present.
    pub fn remove(&mut self, key: &str) -> bool {
        let Some(slot) = self.slot_of.remove(key) else {
            return false;
        };
        self.unlink_bands(slot);
        self.keys[slot as usize] = None;
        self.free.push(slot);
        true
    }

    /// Stored documents whose estimated Jaccard with `signature` is >= the
    /// threshold, most similar first.
    pub fn query(&self, signature: &[u32]) -> crate::Result<Vec<Match>> {
        self.check_signature(signature)?;
        let mut slots: Vec<u32> = Vec::new();
        for (table, h) in self.bands.iter().zip(self.band_hashes(signature)) {
            if let Some(bucket) = table.get(&h) {
                slots.extend_from_slice(bucket);
            }
        }
        slots.sort_unstable();
        slots.dedup();
        let mut matches: Vec<Match> = slots
            .into_iter()
            .filter_map(|slot| {
                let similarity = estimated_jaccard(signature, self.sig(slot));
                let key = self.keys[slot as usize].as_ref()?;
                (similarity >= self.params.threshold).then(|| Match { key: key.clone(), similarity })
            })
            .collect();
        matches.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then_with(|| a.key.cmp(&b.key)));
        Ok(matches)
    }
}
