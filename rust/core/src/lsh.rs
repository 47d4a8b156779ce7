//! Banded LSH over MinHash signatures: batch near-duplicate clustering and a
//! persistent, incremental index for ingestion.
//!
//! A signature of `num_perm` values is cut into `bands` bands of `rows` values;
//! two documents are candidates when any band hashes identically, and a
//! candidate pair counts as a near duplicate when its estimated Jaccard
//! similarity reaches the threshold. Candidates are always verified, so the
//! banding only decides recall and speed, never precision.

use crate::fingerprint::FingerprintConfig;
use crate::minhash::{estimated_jaccard, is_empty_signature, MAX_NUM_PERM};
use crate::normalize::NormalizeOptions;
use crate::shingle::Shingles;
use crate::CoreError;
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed, Xxh3};

// ---------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------

/// Intervals of the composite Simpson rule used by [`optimal_params`]; enough
/// to reproduce scipy's `quad` choice for every threshold we tried.
const SIMPSON_INTERVALS: usize = 200;

fn check_threshold(threshold: f64) -> crate::Result<()> {
    // Written so that NaN fails too.
    if threshold > 0.0 && threshold <= 1.0 {
        Ok(())
    } else {
        Err(CoreError::invalid(format!("threshold must be in (0, 1], got {threshold}")))
    }
}

fn check_num_perm(num_perm: usize) -> crate::Result<()> {
    if num_perm == 0 || num_perm > MAX_NUM_PERM {
        return Err(CoreError::invalid(format!("num_perm must be in 1..={MAX_NUM_PERM}, got {num_perm}")));
    }
    Ok(())
}

/// Composite Simpson rule of `f` over `[a, b]` (`SIMPSON_INTERVALS` is even).
fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    let n = SIMPSON_INTERVALS;
    let h = (b - a) / n as f64;
    let inner: f64 = (1..n).map(|i| if i % 2 == 1 { 4.0 } else { 2.0 } * f(a + i as f64 * h)).sum();
    (f(a) + f(b) + inner) * h / 3.0
}

/// Bands and rows (`bands * rows <= num_perm`) that minimise the weighted sum
/// of false-positive and false-negative probability mass around `threshold`,
/// with equal weights, as datasketch's `_optimal_param` does.
pub fn optimal_params(threshold: f64, num_perm: usize) -> crate::Result<(usize, usize)> {
    check_threshold(threshold)?;
    check_num_perm(num_perm)?;
    // P(candidate | similarity s) = 1 - (1 - s^r)^b.
    let mut best = (f64::INFINITY, (1, 1));
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let miss = |s: f64| (1.0 - s.powi(r as i32)).powi(b as i32);
            let false_pos = simpson(|s| 1.0 - miss(s), 0.0, threshold);
            let false_neg = simpson(miss, threshold, 1.0);
            let error = 0.5 * false_pos + 0.5 * false_neg;
            // Strict `<`: the first minimum in (b, r) order wins, as in datasketch.
            if error < best.0 {
                best = (error, (b, r));
            }
        }
    }
    Ok(best.1)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepPolicy {
    /// Keep the lowest index of each cluster.
    First,
    /// Keep the longest document of each cluster (ties: lowest index).
    Longest,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LshParams {
    pub threshold: f64,
    pub bands: usize,
    pub rows: usize,
}

impl LshParams {
    /// Validates `threshold` in (0, 1] and picks bands × rows with [`optimal_params`].
    pub fn for_threshold(threshold: f64, num_perm: usize) -> crate::Result<Self> {
        let (bands, rows) = optimal_params(threshold, num_perm)?;
        Ok(LshParams { threshold, bands, rows })
    }

    /// Checks that these parameters can be used with signatures of `num_perm` values.
    pub fn validate(&self, num_perm: usize) -> crate::Result<()> {
        check_threshold(self.threshold)?;
        check_num_perm(num_perm)?;
        if self.bands == 0 || self.rows == 0 {
            return Err(CoreError::invalid(format!(
                "bands and rows must both be at least 1, got bands={} rows={}",
                self.bands, self.rows
            )));
        }
        match self.bands.checked_mul(self.rows) {
            Some(used) if used <= num_perm => Ok(()),
            _ => Err(CoreError::invalid(format!(
                "bands * rows must be <= num_perm ({num_perm}), got {} * {}",
                self.bands, self.rows
            ))),
        }
    }
}

/// The bucket key of band `band` of a signature: xxh3 of its `rows` values as
/// little-endian bytes, seeded with the band index (bands longer than 64
/// values are hashed in 64-value pieces, each seeded with the previous hash).
fn band_hash(sig: &[u32], band: usize, rows: usize) -> u64 {
    let mut buf = [0u8; 256];
    let mut h = band as u64;
    for piece in sig[band * rows..(band + 1) * rows].chunks(64) {
        for (dst, v) in buf.chunks_exact_mut(4).zip(piece) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        h = xxh3_64_with_seed(&buf[..piece.len() * 4], h);
    }
    h
}

// ---------------------------------------------------------------------------
// Batch clustering
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clusters {
    /// For each document, the index of its cluster's kept representative
    /// (so `cluster_of[i] == i` exactly for kept documents).
    pub cluster_of: Vec<u32>,
    pub keep: Vec<bool>,
    /// Clusters with at least two members.
    pub num_dup_clusters: usize,
    pub candidate_pairs: u64,
    pub verified_pairs: u64,
}

/// Buckets of at most this many members are compared all-pairs; larger ones
/// only member-to-first and member-to-predecessor, which still connects a
/// bucket of true duplicates while keeping the work linear.
const SMALL_BUCKET: usize = 16;

fn pair_key(a: u32, b: u32) -> u64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    (u64::from(lo) << 32) | u64::from(hi)
}

/// Candidate pairs (as [`pair_key`]s, possibly repeated) from one band's
/// `(hash, doc)` entries, which must be sorted.
fn bucket_pairs(entries: &[(u64, u32)], out: &mut Vec<u64>) {
    for bucket in entries.chunk_by(|x, y| x.0 == y.0) {
        if bucket.len() <= SMALL_BUCKET {
            for (i, &(_, a)) in bucket.iter().enumerate() {
                out.extend(bucket[i + 1..].iter().map(|&(_, b)| pair_key(a, b)));
            }
        } else {
            let first = bucket[0].1;
            for w in bucket.windows(2) {
                out.push(pair_key(w[0].1, w[1].1));
                if w[0].1 != first {
                    out.push(pair_key(first, w[1].1));
                }
            }
        }
    }
}

/// Distinct candidate pairs over all bands, sorted.
fn candidate_pairs(signatures: &[u32], num_perm: usize, params: LshParams) -> Vec<u64> {
    let n = signatures.len() / num_perm;
    let bands = params.bands;
    let sig = |i: u32| &signatures[i as usize * num_perm..][..num_perm];
    let live: Vec<u32> = (0..n as u32).into_par_iter().filter(|&i| !is_empty_signature(sig(i))).collect();
    // All band hashes of a document in one pass over its signature (doc-major).
    let mut hashes = vec![0u64; live.len() * bands];
    hashes.par_chunks_mut(bands).zip(live.par_iter()).for_each(|(out, &i)| {
        for (band, h) in out.iter_mut().enumerate() {
            *h = band_hash(sig(i), band, params.rows);
        }
    });
    let mut pairs: Vec<u64> = (0..bands)
        .into_par_iter()
        .flat_map_iter(|band| {
            let mut entries: Vec<(u64, u32)> =
                live.iter().enumerate().map(|(j, &i)| (hashes[j * bands + band], i)).collect();
            entries.par_sort_unstable();
            let mut out = Vec::new();
            bucket_pairs(&entries, &mut out);
            out
        })
        .collect();
    pairs.par_sort_unstable();
    pairs.dedup();
    pairs
}

/// Union-find with path halving and union by size.
struct DisjointSets {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl DisjointSets {
    fn new(n: usize) -> Self {
        DisjointSets { parent: (0..n as u32).collect(), size: vec![1; n] }
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    fn union(&mut self, a: u32, b: u32) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.size[a as usize] < self.size[b as usize] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b as usize] = a;
        self.size[a as usize] += self.size[b as usize];
    }
}

fn check_cluster_inputs(
    signatures: &[u32],
    num_perm: usize,
    params: LshParams,
    keep: KeepPolicy,
    lengths: &[usize],
) -> crate::Result<usize> {
    params.validate(num_perm)?;
    let n = signatures.len() / num_perm;
    if n * num_perm != signatures.len() {
        return Err(CoreError::invalid(format!(
            "signatures length {} is not a multiple of num_perm {num_perm}",
            signatures.len()
        )));
    }
    if n > u32::MAX as usize {
        return Err(CoreError::invalid(format!("at most {} documents can be clustered, got {n}", u32::MAX)));
    }
    let lengths_ok = lengths.len() == n || (keep == KeepPolicy::First && lengths.is_empty());
    if !lengths_ok {
        return Err(CoreError::invalid(format!(
            "lengths must have one entry per document ({n}), got {} (it may be empty only with KeepPolicy::First)",
            lengths.len()
        )));
    }
    Ok(n)
}

/// Clusters `n = signatures.len() / num_perm` signatures (row-major). Pairs
/// sharing a band bucket are candidates; a candidate pair is joined
/// (union-find) when its estimated Jaccard is >= `params.threshold`. Empty
/// signatures (no shingles) are never joined. `lengths[i]` is used by
/// [`KeepPolicy::Longest`].
pub fn cluster_signatures(
    signatures: &[u32],
    num_perm: usize,
    params: LshParams,
    keep: KeepPolicy,
    lengths: &[usize],
) -> crate::Result<Clusters> {
    let n = check_cluster_inputs(signatures, num_perm, params, keep, lengths)?;
    let sig = |i: u32| &signatures[i as usize * num_perm..][..num_perm];

    let candidates = candidate_pairs(signatures, num_perm, params);
    let verified: Vec<u64> = candidates
        .par_iter()
        .copied()
        .filter(|&p| estimated_jaccard(sig((p >> 32) as u32), sig(p as u32)) >= params.threshold)
        .collect();

    let mut sets = DisjointSets::new(n);
    for &p in &verified {
        sets.union((p >> 32) as u32, p as u32);
    }

    // Representative per root, scanning in index order so ties keep the lowest index.
    const NONE: u32 = u32::MAX;
    let mut rep = vec![NONE; n];
    let mut root_of = vec![0u32; n];
    for i in 0..n as u32 {
        let root = sets.find(i);
        root_of[i as usize] = root;
        let r = &mut rep[root as usize];
        let better = *r == NONE || (keep == KeepPolicy::Longest && lengths[i as usize] > lengths[*r as usize]);
        if better {
            *r = i;
        }
    }
    let cluster_of: Vec<u32> = root_of.iter().map(|&root| rep[root as usize]).collect();
    let keep: Vec<bool> = cluster_of.iter().enumerate().map(|(i, &c)| c as usize == i).collect();
    let num_dup_clusters = (0..n).filter(|&i| sets.parent[i] as usize == i && sets.size[i] >= 2).count();
    Ok(Clusters {
        cluster_of,
        keep,
        num_dup_clusters,
        candidate_pairs: candidates.len() as u64,
        verified_pairs: verified.len() as u64,
    })
}

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
    config: FingerprintConfig,
    params: LshParams,
    /// Key per slot; `None` for a free slot.
    keys: Vec<Option<String>>,
    /// `num_perm` values per slot.
    sigs: Vec<u32>,
    slot_of: HashMap<String, u32>,
    free: Vec<u32>,
    bands: Vec<HashMap<u64, Vec<u32>>>,
}

fn check_config(config: &FingerprintConfig) -> crate::Result<()> {
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

    fn sig(&self, slot: u32) -> &[u32] {
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

    /// Atomic save: a temporary file in the same directory, fsync, rename.
    pub fn save(&self, path: &Path) -> crate::Result<()> {
        let tmp = temp_path(path)?;
        let result = self.write_file(&tmp).and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|e| CoreError::io(path, e))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
            return result;
        }
        sync_parent_dir(path);
        Ok(())
    }

    pub fn load(path: &Path) -> crate::Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
        let what = format!("LSH index {}", path.display());
        let corrupt = |detail: String| CoreError::Corrupt { what: what.clone(), detail };
        let (config, params, entries) = decode(&bytes).map_err(corrupt)?;
        let mut index = LshIndex::new(config, params).map_err(|e| corrupt(e.to_string()))?;
        for (key, sig) in entries {
            if index.contains(key) {
                return Err(corrupt(format!("duplicate key {key:?}")));
            }
            let sig: Vec<u32> = sig.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            index.insert(key, &sig).map_err(|e| corrupt(e.to_string()))?;
        }
        Ok(index)
    }

    /// Streams the file format (see [`MAGIC`]) to `tmp` and syncs it.
    fn write_file(&self, tmp: &Path) -> crate::Result<()> {
        let io = |e| CoreError::io(tmp, e);
        let file = File::create(tmp).map_err(io)?;
        let mut w = HashingWriter { inner: BufWriter::new(file), hasher: Xxh3::new() };
        w.write_all(&self.header()).map_err(io)?;
        for (slot, key) in self.keys.iter().enumerate() {
            let Some(key) = key else { continue };
            w.write_all(&(key.len() as u32).to_le_bytes()).map_err(io)?;
            w.write_all(key.as_bytes()).map_err(io)?;
            let mut sig_bytes = Vec::with_capacity(self.config.num_perm * 4);
            for v in self.sig(slot as u32) {
                sig_bytes.extend_from_slice(&v.to_le_bytes());
            }
            w.write_all(&sig_bytes).map_err(io)?;
        }
        let checksum = w.hasher.digest();
        let mut inner = w.inner;
        inner.write_all(&checksum.to_le_bytes()).map_err(io)?;
        let file = inner.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)
    }

    fn header(&self) -> Vec<u8> {
        let c = &self.config;
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        h.extend_from_slice(&(c.num_perm as u32).to_le_bytes());
        h.extend_from_slice(&c.seed.to_le_bytes());
        h.push(match c.shingles {
            Shingles::Words(_) => 0,
            Shingles::Chars(_) => 1,
        });
        h.extend_from_slice(&(c.shingles.size() as u32).to_le_bytes());
        h.push(c.normalize.lowercase as u8);
        h.push(c.normalize.strip_boilerplate as u8);
        h.extend_from_slice(&self.params.threshold.to_bits().to_le_bytes());
        h.extend_from_slice(&(self.params.bands as u32).to_le_bytes());
        h.extend_from_slice(&(self.params.rows as u32).to_le_bytes());
        h.extend_from_slice(&(self.len() as u64).to_le_bytes());
        debug_assert_eq!(h.len(), HEADER_LEN);
        h
    }
}

// ---------------------------------------------------------------------------
// File format
// ---------------------------------------------------------------------------
//
// All integers little-endian:
//   magic [8] | version u32 | num_perm u32 | seed u64 | shingle kind u8 (0 words, 1 chars)
//   | shingle size u32 | lowercase u8 | strip_boilerplate u8 | threshold f64 | bands u32
//   | rows u32 | entries u64 | entries × (key length u32, key UTF-8, num_perm × u32)
//   | xxh3_64 of everything before it (u64).

const MAGIC: &[u8; 8] = b"DCLSH\0\0\x01";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 1 + 4 + 1 + 1 + 8 + 4 + 4 + 8;
const CHECKSUM_LEN: usize = 8;

/// Writes through to `inner` while hashing everything written.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Xxh3,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A unique sibling of `path` for the atomic save.
fn temp_path(path: &Path) -> crate::Result<std::path::PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| CoreError::invalid(format!("index path must name a file, got {}", path.display())))?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = name.to_os_string();
    tmp.push(format!(".tmp-{}-{n}", std::process::id()));
    Ok(path.with_file_name(tmp))
}

/// Makes the rename durable; best effort (not every platform can open a directory).
fn sync_parent_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Bounds-checked little-endian reader over the payload.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err(format!("truncated: {field} needs {n} bytes, {} left", self.buf.len()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self, field: &str) -> Result<u8, String> {
        Ok(self.take(1, field)?[0])
    }
    fn u32(&mut self, field: &str) -> Result<u32, String> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, field: &str) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_le_bytes(a))
    }
    fn flag(&mut self, field: &str) -> Result<bool, String> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("{field} must be 0 or 1, got {other}")),
        }
    }
}

/// One stored entry: the key and its signature's raw little-endian bytes.
type RawEntry<'a> = (&'a str, &'a [u8]);

/// Checks magic, version and checksum, then parses header and entries.
fn decode(bytes: &[u8]) -> Result<(FingerprintConfig, LshParams, Vec<RawEntry<'_>>), String> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not an LSH index file (bad magic bytes)".into());
    }
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(format!("truncated: {} bytes is shorter than the header", bytes.len()));
    }
    let mut r = Reader { buf: &bytes[MAGIC.len()..] };
    let version = r.u32("version")?;
    if version != FORMAT_VERSION {
        return Err(format!("unsupported format version {version} (this build reads {FORMAT_VERSION})"));
    }
    let (payload, stored) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let stored = u64::from_le_bytes(stored.try_into().map_err(|_| "bad checksum field")?);
    if xxh3_64(payload) != stored {
        return Err("checksum mismatch (file truncated or modified)".into());
    }
    let mut r = Reader { buf: &payload[MAGIC.len() + 4..] };
    let num_perm = r.u32("num_perm")? as usize;
    let seed = r.u64("seed")?;
    let kind = r.u8("shingle kind")?;
    let size = r.u32("shingle size")? as usize;
    let shingles = match kind {
        0 => Shingles::Words(size),
        1 => Shingles::Chars(size),
        other => return Err(format!("shingle kind must be 0 (words) or 1 (chars), got {other}")),
    };
    let normalize = NormalizeOptions { lowercase: r.flag("lowercase")?, strip_boilerplate: r.flag("strip_boilerplate")? };
    let threshold = f64::from_bits(r.u64("threshold")?);
    let bands = r.u32("bands")? as usize;
    let rows = r.u32("rows")? as usize;
    let count = r.u64("entry count")?;
    let config = FingerprintConfig { num_perm, seed, shingles, normalize };
    let params = LshParams { threshold, bands, rows };
    check_config(&config).and_then(|()| params.validate(num_perm)).map_err(|e| e.to_string())?;

    // Each entry takes at least 4 + 4 * num_perm bytes: bound the count before allocating.
    let min_entry = 4 + 4 * num_perm as u64;
    if count > r.buf.len() as u64 / min_entry {
        return Err(format!("entry count {count} does not fit in the {} remaining bytes", r.buf.len()));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for i in 0..count {
        let len = r.u32("key length")? as usize;
        let key = std::str::from_utf8(r.take(len, "key")?).map_err(|e| format!("key {i} is not UTF-8: {e}"))?;
        entries.push((key, r.take(4 * num_perm, "signature")?));
    }
    if !r.buf.is_empty() {
        return Err(format!("{} unexpected bytes after the last entry", r.buf.len()));
    }
    Ok((config, params, entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::Fingerprinter;
    use std::time::Instant;

    fn fingerprinter() -> Fingerprinter {
        Fingerprinter::new(FingerprintConfig::default()).unwrap()
    }

    /// A deterministic pseudo-random text of `words` words.
    fn text(seed: u64, words: usize) -> String {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..words)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                format!("w{}", state % 5000)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `base` with its `k`-th word replaced.
    fn edit(base: &str, k: usize) -> String {
        let mut words: Vec<&str> = base.split(' ').collect();
        words[k] = "changed";
        words.join(" ")
    }

    fn params(threshold: f64) -> LshParams {
        LshParams::for_threshold(threshold, 128).unwrap()
    }

    #[test]
    fn optimal_params_match_datasketch() {
        assert_eq!(optimal_params(0.5, 128).unwrap(), (25, 5));
        assert_eq!(optimal_params(0.7, 128).unwrap(), (14, 9));
        assert_eq!(optimal_params(0.8, 128).unwrap(), (9, 13));
        assert_eq!(optimal_params(0.9, 128).unwrap(), (5, 25));
    }

    #[test]
    fn optimal_params_are_sane() {
        let mut last_rows = 0;
        for t in [0.3, 0.5, 0.7, 0.8, 0.9, 0.95] {
            let (b, r) = optimal_params(t, 128).unwrap();
            assert!(b >= 1 && r >= 1 && b * r <= 128, "{t}: {b} x {r}");
            assert!(r >= last_rows, "rows should grow with the threshold: {t} gives {r} < {last_rows}");
            last_rows = r;
        }
        assert_eq!(optimal_params(0.5, 1).unwrap(), (1, 1));
        assert!(optimal_params(0.5, 0).is_err());
    }

    #[test]
    fn invalid_thresholds_are_errors() {
        for t in [0.0, -1.0, 1.5, f64::NAN, f64::INFINITY] {
            assert!(optimal_params(t, 128).is_err(), "{t}");
            assert!(LshParams::for_threshold(t, 128).is_err(), "{t}");
            let p = LshParams { threshold: t, bands: 8, rows: 16 };
            assert!(cluster_signatures(&[1; 128], 128, p, KeepPolicy::First, &[]).is_err(), "{t}");
        }
        assert!(LshParams::for_threshold(1.0, 128).is_ok());
    }

    #[test]
    fn bad_shapes_are_errors() {
        let p = params(0.8);
        let sigs = vec![1u32; 256];
        assert!(cluster_signatures(&sigs[..200], 128, p, KeepPolicy::First, &[]).is_err());
        assert!(cluster_signatures(&sigs, 0, p, KeepPolicy::First, &[]).is_err());
        assert!(cluster_signatures(&sigs, 64, p, KeepPolicy::First, &[]).is_err(), "bands*rows > num_perm");
        assert!(cluster_signatures(&sigs, 128, p, KeepPolicy::Longest, &[]).is_err());
        assert!(cluster_signatures(&sigs, 128, p, KeepPolicy::First, &[1]).is_err());
        let zero = LshParams { threshold: 0.8, bands: 0, rows: 4 };
        assert!(cluster_signatures(&sigs, 128, zero, KeepPolicy::First, &[]).is_err());
        let empty = cluster_signatures(&[], 128, p, KeepPolicy::First, &[]).unwrap();
        assert!(empty.keep.is_empty() && empty.num_dup_clusters == 0);
    }

    #[test]
    fn near_duplicates_cluster_and_distinct_texts_do_not() {
        let f = fingerprinter();
        let a = text(1, 300);
        let b = text(2, 300);
        let texts = [a.clone(), b.clone(), edit(&a, 150), text(3, 300), edit(&b, 10), a.clone()];
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let c = cluster_signatures(&f.signatures(&refs), 128, params(0.8), KeepPolicy::First, &[]).unwrap();
        assert_eq!(c.cluster_of, [0, 1, 0, 3, 1, 0]);
        assert_eq!(c.keep, [true, true, false, true, false, false]);
        assert_eq!(c.num_dup_clusters, 2);
        assert!(c.verified_pairs >= 3 && c.candidate_pairs >= c.verified_pairs);
    }

    #[test]
    fn keep_longest_picks_max_length_then_lowest_index() {
        let f = fingerprinter();
        let a = text(7, 200);
        let texts = [a.clone(), edit(&a, 5), edit(&a, 100), text(8, 200)];
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let sigs = f.signatures(&refs);
        let c = cluster_signatures(&sigs, 128, params(0.8), KeepPolicy::Longest, &[10, 30, 30, 5]).unwrap();
        assert_eq!(c.cluster_of, [1, 1, 1, 3]);
        assert_eq!(c.keep, [false, true, false, true]);
        let c = cluster_signatures(&sigs, 128, params(0.8), KeepPolicy::First, &[10, 30, 30, 5]).unwrap();
        assert_eq!(c.cluster_of, [0, 0, 0, 3]);
    }

    #[test]
    fn empty_signatures_stay_singletons() {
        let f = fingerprinter();
        let c = cluster_signatures(&f.signatures(&["", " ,. ", ""]), 128, params(0.5), KeepPolicy::First, &[])
            .unwrap();
        assert_eq!(c.cluster_of, [0, 1, 2]);
        assert_eq!((c.num_dup_clusters, c.candidate_pairs), (0, 0));
    }

    #[test]
    fn a_big_bucket_clusters_quickly() {
        let sig = fingerprinter().signature(&text(9, 100));
        let sigs: Vec<u32> = (0..1000).flat_map(|_| sig.iter().copied()).collect();
        let start = Instant::now();
        let c = cluster_signatures(&sigs, 128, params(0.8), KeepPolicy::First, &[]).unwrap();
        assert!(start.elapsed().as_secs_f64() < 2.0, "{:?}", start.elapsed());
        assert!(c.cluster_of.iter().all(|&x| x == 0));
        assert_eq!(c.num_dup_clusters, 1);
        assert!(c.candidate_pairs < 2000, "big buckets must not be compared all-pairs: {}", c.candidate_pairs);
    }

    /// Process CPU time in seconds (utime + stime from /proc; 0 where unavailable).
    fn cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    }

    /// `cargo test --release -p datacore lsh::tests::timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn timing_60k() {
        let n = 60_000;
        let f = fingerprinter();
        let base: Vec<String> = (0..n / 2).map(|i| text(i as u64, 120)).collect();
        let texts: Vec<String> =
            (0..n).map(|i| if i % 2 == 0 { base[i / 2].clone() } else { edit(&base[i / 2], 60) }).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let sigs = f.signatures(&refs);
        let runs = 20;
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut best = f64::INFINITY;
            let cpu = cpu_seconds();
            for _ in 0..runs {
                let start = Instant::now();
                pool.install(|| cluster_signatures(&sigs, 128, params(0.8), KeepPolicy::First, &[]).unwrap());
                best = best.min(start.elapsed().as_secs_f64());
            }
            let cpu = (cpu_seconds() - cpu) / runs as f64;
            println!("{threads} threads: best wall {:.1} ms, mean CPU {:.1} ms", best * 1e3, cpu * 1e3);
        }
    }

    fn sample_index() -> (LshIndex, Vec<String>) {
        let f = fingerprinter();
        let mut index = LshIndex::new(*f.config(), params(0.7)).unwrap();
        let texts: Vec<String> = (0..20).map(|i| text(100 + i, 150)).collect();
        for (i, t) in texts.iter().enumerate() {
            index.insert(&format!("doc-{i}"), &f.signature(t)).unwrap();
        }
        index.insert("empty", &f.signature("")).unwrap();
        (index, texts)
    }

    #[test]
    fn index_insert_query_replace_remove() {
        let f = fingerprinter();
        let (mut index, texts) = sample_index();
        assert_eq!(index.len(), 21);
        assert!(index.contains("doc-3") && index.contains("empty"));

        let hits = index.query(&f.signature(&edit(&texts[3], 75))).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].key, "doc-3");
        assert!(hits[0].similarity >= 0.7 && hits[0].similarity < 1.0);
        assert!(index.query(&f.signature(&text(999, 150))).unwrap().is_empty());
        assert!(index.query(&f.signature("")).unwrap().is_empty(), "empty signatures never match");

        // a second copy ranks first (similarity 1.0), ties sorted by key
        index.insert("copy-of-3", &f.signature(&texts[3])).unwrap();
        let keys: Vec<String> = index.query(&f.signature(&texts[3])).unwrap().into_iter().map(|m| m.key).collect();
        assert_eq!(keys, ["copy-of-3", "doc-3"]);

        // replacing moves the key to its new text
        index.insert("doc-3", &f.signature(&texts[4])).unwrap();
        assert_eq!(index.len(), 22);
        let keys: Vec<String> = index.query(&f.signature(&texts[4])).unwrap().into_iter().map(|m| m.key).collect();
        assert_eq!(keys, ["doc-3", "doc-4"]);
        let keys: Vec<String> = index.query(&f.signature(&texts[3])).unwrap().into_iter().map(|m| m.key).collect();
        assert_eq!(keys, ["copy-of-3"]);

        assert!(index.remove("doc-4"));
        assert!(!index.remove("doc-4"));
        assert!(!index.contains("doc-4"));
        let keys: Vec<String> = index.query(&f.signature(&texts[4])).unwrap().into_iter().map(|m| m.key).collect();
        assert_eq!(keys, ["doc-3"]);
        // a freed slot is reused
        index.insert("new", &f.signature(&texts[4])).unwrap();
        assert_eq!(index.keys.len(), 22);

        assert!(index.insert("bad", &[1, 2, 3]).is_err());
        assert!(index.query(&[1, 2, 3]).is_err());
    }

    #[test]
    fn index_rejects_bad_settings() {
        let config = FingerprintConfig::default();
        assert!(LshIndex::new(config, LshParams { threshold: 0.8, bands: 20, rows: 20 }).is_err());
        assert!(LshIndex::new(config, LshParams { threshold: 1.5, bands: 9, rows: 13 }).is_err());
        let bad = FingerprintConfig { num_perm: 0, ..config };
        assert!(LshIndex::new(bad, params(0.8)).is_err());
    }

    #[test]
    fn save_load_roundtrip() {
        let f = fingerprinter();
        let (mut index, texts) = sample_index();
        index.remove("doc-7");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.lsh");
        index.save(&path).unwrap();
        index.save(&path).unwrap(); // overwriting works too
        let loaded = LshIndex::load(&path).unwrap();
        assert_eq!(loaded.config(), index.config());
        assert_eq!(loaded.params(), index.params());
        assert_eq!(loaded.len(), index.len());
        assert!(loaded.contains("empty") && !loaded.contains("doc-7"));
        for t in texts.iter().chain([&edit(&texts[5], 3), &String::new()]) {
            let sig = f.signature(t);
            assert_eq!(loaded.query(&sig).unwrap(), index.query(&sig).unwrap());
        }
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    fn assert_corrupt(path: &Path) {
        match LshIndex::load(path) {
            Err(CoreError::Corrupt { what, detail }) => {
                assert!(what.starts_with("LSH index"), "{what}");
                assert!(!detail.is_empty());
            }
            Err(other) => panic!("expected Corrupt, got {other:?}"),
            Ok(_) => panic!("expected Corrupt, got an index"),
        }
    }

    #[test]
    fn damaged_files_are_corrupt_errors() {
        let (index, _) = sample_index();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.lsh");
        index.save(&path).unwrap();
        let good = std::fs::read(&path).unwrap();
        let bad = dir.path().join("bad.lsh");

        for cut in [0, 5, HEADER_LEN, good.len() / 2, good.len() - 1] {
            std::fs::write(&bad, &good[..cut]).unwrap();
            assert_corrupt(&bad);
        }
        for pos in [20, HEADER_LEN + 2, good.len() / 2, good.len() - 3] {
            let mut flipped = good.clone();
            flipped[pos] ^= 0x40;
            std::fs::write(&bad, &flipped).unwrap();
            assert_corrupt(&bad);
        }
        let mut wrong_magic = good.clone();
        wrong_magic[0] = b'X';
        std::fs::write(&bad, &wrong_magic).unwrap();
        assert_corrupt(&bad);

        // a huge entry count with a valid checksum must not allocate
        let mut huge = good[..good.len() - CHECKSUM_LEN].to_vec();
        huge[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&u64::MAX.to_le_bytes());
        let sum = xxh3_64(&huge);
        huge.extend_from_slice(&sum.to_le_bytes());
        std::fs::write(&bad, &huge).unwrap();
        assert_corrupt(&bad);

        match LshIndex::load(&dir.path().join("missing.lsh")) {
            Err(CoreError::Io { .. }) => {}
            other => panic!("expected Io, got {:?}", other.map(|i| i.len())),
        }
    }
}
