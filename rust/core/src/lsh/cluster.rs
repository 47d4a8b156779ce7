//! Batch near-duplicate clustering: band buckets → candidate pairs →
//! verification by estimated Jaccard → union-find → one representative each.

use super::params::{band_hash, LshParams};
use crate::minhash::{estimated_jaccard, is_empty_signature};
use crate::CoreError;
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepPolicy {
    /// Keep the lowest index of each cluster.
    First,
    /// Keep the longest document of each cluster (ties: lowest index).
    Longest,
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
    /// Pairs the caller joined besides the LSH ones (see [`cluster_signatures_joining`]).
    pub extra_pairs: u64,
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
    cluster_signatures_joining(signatures, num_perm, params, keep, lengths, &[])
}

/// As [`cluster_signatures`], also joining the document pairs `extra_pairs`
/// (`i << 32 | j`), found by another test of similarity (such as
/// [`crate::edits::one_edit_pairs`]).
pub fn cluster_signatures_joining(
    signatures: &[u32],
    num_perm: usize,
    params: LshParams,
    keep: KeepPolicy,
    lengths: &[usize],
    extra_pairs: &[u64],
) -> crate::Result<Clusters> {
    let n = check_cluster_inputs(signatures, num_perm, params, keep, lengths)?;
    if let Some(&bad) = extra_pairs.iter().find(|&&p| (p >> 32) as usize >= n || (p as u32) as usize >= n) {
        return Err(CoreError::invalid(format!(
            "extra pair ({}, {}) names a document beyond the {n} signatures",
            bad >> 32,
            bad as u32
        )));
    }
    let sig = |i: u32| &signatures[i as usize * num_perm..][..num_perm];

    let candidates = candidate_pairs(signatures, num_perm, params);
    let verified: Vec<u64> = candidates
        .par_iter()
        .copied()
        .filter(|&p| estimated_jaccard(sig((p >> 32) as u32), sig(p as u32)) >= params.threshold)
        .collect();

    let mut sets = DisjointSets::new(n);
    for &p in verified.iter().chain(extra_pairs) {
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
        extra_pairs: extra_pairs.len() as u64,
    })
}
