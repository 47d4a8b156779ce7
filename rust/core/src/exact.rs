//! Exact deduplication by xxh3 content hash (64 or 128 bits).
//!
//! Callers hash the *normalized* text, so copies that differ only in Unicode
//! form, spacing or control characters collapse. The first occurrence is kept.

use rayon::prelude::*;
use std::collections::HashMap;
use std::hash::Hash;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashWidth {
    Bits64,
    Bits128,
}

impl HashWidth {
    pub fn from_bits(bits: u32) -> crate::Result<Self> {
        match bits {
            64 => Ok(HashWidth::Bits64),
            128 => Ok(HashWidth::Bits128),
            other => Err(crate::CoreError::invalid(format!("hash bits must be 64 or 128, got {other}"))),
        }
    }
}

/// The content hash of a text; a 64-bit hash is returned in the low bits.
pub fn content_hash(text: &str, width: HashWidth) -> u128 {
    match width {
        HashWidth::Bits64 => xxh3_64(text.as_bytes()) as u128,
        HashWidth::Bits128 => xxh3_128(text.as_bytes()),
    }
}

/// Content hashes of a batch, in parallel.
pub fn content_hashes(texts: &[&str], width: HashWidth) -> Vec<u128> {
    texts.par_iter().map(|t| content_hash(t, width)).collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExactDuplicates {
    /// `true` for the first occurrence of each distinct hash.
    pub keep: Vec<bool>,
    /// For a duplicate, the index of the kept first occurrence; `-1` for kept items.
    pub duplicate_of: Vec<i64>,
}

impl ExactDuplicates {
    pub fn num_duplicates(&self) -> usize {
        self.keep.iter().filter(|k| !**k).count()
    }
}

/// Marks every item whose hash was already seen as a duplicate of the first one.
pub fn find_exact_duplicates<H: Eq + Hash + Copy>(hashes: &[H]) -> ExactDuplicates {
    let mut first: HashMap<H, usize> = HashMap::with_capacity(hashes.len());
    let mut keep = Vec::with_capacity(hashes.len());
    let mut duplicate_of = Vec::with_capacity(hashes.len());
    for (i, h) in hashes.iter().enumerate() {
        match first.entry(*h) {
            std::collections::hash_map::Entry::Occupied(e) => {
                keep.push(false);
                duplicate_of.push(*e.get() as i64);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(i);
                keep.push(true);
                duplicate_of.push(-1);
            }
        }
    }
    ExactDuplicates { keep, duplicate_of }
}

/// Hashes `texts` and finds exact duplicates among them.
pub fn exact_dedup(texts: &[&str], width: HashWidth) -> ExactDuplicates {
    find_exact_duplicates(&content_hashes(texts, width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_occurrence_is_kept() {
        let d = exact_dedup(&["a", "b", "a", "c", "b", "a"], HashWidth::Bits64);
        assert_eq!(d.keep, vec![true, true, false, true, false, false]);
        assert_eq!(d.duplicate_of, vec![-1, -1, 0, -1, 1, 0]);
        assert_eq!(d.num_duplicates(), 3);
    }

    #[test]
    fn widths_agree_on_distinct_inputs_and_differ_in_size() {
        let texts = ["x", "y", "", "x"];
        for w in [HashWidth::Bits64, HashWidth::Bits128] {
            assert_eq!(exact_dedup(&texts, w).keep, vec![true, true, true, false]);
        }
        assert!(content_hash("x", HashWidth::Bits64) <= u64::MAX as u128);
        assert_ne!(content_hash("x", HashWidth::Bits128), content_hash("y", HashWidth::Bits128));
    }

    #[test]
    fn bad_width_is_an_error() {
        assert!(HashWidth::from_bits(32).is_err());
    }

    #[test]
    fn empty_batch() {
        let d = exact_dedup(&[], HashWidth::Bits128);
        assert!(d.keep.is_empty() && d.duplicate_of.is_empty());
    }
}
