//! Near duplicates that differ by one word, among short texts.
//!
//! Shingle Jaccard cannot see these: one substituted word changes up to five
//! word 5-grams, so in a 40-word text the Jaccard falls to about 0.76, below a
//! 0.8 threshold, and no shingle size fixes that without also joining distinct
//! templated documents (see BENCHMARKS.md). Here two word sequences are
//! duplicates when one word substitution, insertion or deletion turns one into
//! the other, checked exactly on the word hashes.
//!
//! Candidates come from the pigeonhole principle: cut a sequence of `m` words
//! into its first and last `m / 2` words; one edit leaves one of the two halves
//! unchanged (an insertion shifts the positions after it, so the last half is
//! keyed from the end). A text of `n` words is keyed as the shorter partner
//! (`m = n`) and as the longer one (`m = n - 1`), four keys in all, so the cost
//! is linear in the words of the short texts.

use rayon::prelude::*;

use crate::shingle::combine_hashes;

/// Texts of this many words or more are left to shingle Jaccard: there one
/// edit is at most 1% of the words (word 5-gram Jaccard >= 0.9), which the
/// MinHash LSH finds (recall 0.998 in BENCHMARKS.md).
pub const MAX_WORDS: usize = 100;

/// Buckets up to this size are compared all-pairs (at most ~130k checks each,
/// each stopping at the second difference); larger ones, which only crafted
/// input produces, are linked member-to-first and member-to-predecessor to
/// keep the work linear, as the LSH buckets are.
const BIG_BUCKET: usize = 512;

const PREFIX: u64 = 0x5052_4546_4958_0000;
const SUFFIX: u64 = 0x5355_4646_4958_0000;

/// True when `a` and `b` are equal or one word substitution, insertion or
/// deletion apart.
pub fn within_one_edit(a: &[u64], b: &[u64]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    match long.len() - short.len() {
        0 => short.iter().zip(long).filter(|(x, y)| x != y).count() <= 1,
        1 => {
            let same = short.iter().zip(long).take_while(|(x, y)| x == y).count();
            short[same..] == long[same + 1..]
        }
        _ => false,
    }
}

/// The key of one half: its words, which end it is and the partner length `m`.
fn half_key(tag: u64, m: usize, words: &[u64]) -> u64 {
    combine_hashes(&[tag ^ m as u64, combine_hashes(words)])
}

/// The candidate keys of one word sequence (empty when it has fewer than two words).
pub fn edit_keys(words: &[u64], out: &mut Vec<u64>) {
    out.clear();
    let n = words.len();
    // as the shorter (or equal-length) partner: m = n; as the longer one: m = n - 1
    for m in [n, n.saturating_sub(1)] {
        let h = m / 2;
        if h == 0 {
            continue;
        }
        out.push(half_key(PREFIX, m, &words[..h]));
        out.push(half_key(SUFFIX, m, &words[n - h..]));
    }
}

fn pair_key(a: u32, b: u32) -> u64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    (u64::from(lo) << 32) | u64::from(hi)
}

/// Pairs `(i, j)`, as `i << 32 | j` with `i < j`, sorted and distinct, of the
/// documents whose word sequences are at most one edit apart. `docs[i]` holds
/// document `i`'s word hashes; an empty one takes no part (the caller empties
/// the texts it leaves to shingle Jaccard).
pub fn one_edit_pairs(docs: &[Vec<u64>]) -> Vec<u64> {
    let mut entries: Vec<(u64, u32)> = docs
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, words)| {
            let mut keys = Vec::new();
            edit_keys(words, &mut keys);
            keys.into_iter().map(move |k| (k, i as u32))
        })
        .collect();
    entries.par_sort_unstable();
    entries.dedup();
    let buckets: Vec<&[(u64, u32)]> = entries.chunk_by(|x, y| x.0 == y.0).filter(|b| b.len() > 1).collect();
    let words = |i: u32| docs[i as usize].as_slice();
    let mut pairs: Vec<u64> = buckets
        .par_iter()
        .flat_map_iter(|bucket| {
            let mut out = Vec::new();
            if bucket.len() <= BIG_BUCKET {
                for (k, &(_, a)) in bucket.iter().enumerate() {
                    for &(_, b) in &bucket[k + 1..] {
                        if within_one_edit(words(a), words(b)) {
                            out.push(pair_key(a, b));
                        }
                    }
                }
            } else {
                let first = bucket[0].1;
                for w in bucket.windows(2) {
                    for a in [first, w[0].1] {
                        if a != w[1].1 && within_one_edit(words(a), words(w[1].1)) {
                            out.push(pair_key(a, w[1].1));
                        }
                    }
                }
            }
            out
        })
        .collect();
    pairs.par_sort_unstable();
    pairs.dedup();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(text: &str) -> Vec<u64> {
        text.split_whitespace().map(crate::shingle::hash_word).collect()
    }

    fn pairs(texts: &[&str]) -> Vec<(u32, u32)> {
        let docs: Vec<Vec<u64>> = texts.iter().map(|t| seq(t)).collect();
        one_edit_pairs(&docs).into_iter().map(|p| ((p >> 32) as u32, p as u32)).collect()
    }

    #[test]
    fn one_edit_is_exact() {
        let a = seq("a b c d e f");
        assert!(within_one_edit(&a, &a));
        assert!(within_one_edit(&a, &seq("a b X d e f")));
        assert!(within_one_edit(&a, &seq("a b c d e")));
        assert!(within_one_edit(&seq("X a b c d e f"), &a));
        assert!(!within_one_edit(&a, &seq("a X c d Y f")));
        assert!(!within_one_edit(&a, &seq("b c d e f g"))); // a deletion and an insertion
        assert!(!within_one_edit(&a, &seq("a b c d")));
    }

    #[test]
    fn every_single_edit_position_is_found() {
        let words: Vec<String> = (0..12).map(|i| format!("w{i}")).collect();
        let base = words.join(" ");
        for p in 0..=words.len() {
            let mut sub = words.clone();
            let mut del = words.clone();
            let mut ins = words.clone();
            if p < words.len() {
                sub[p] = "changed".into();
                del.remove(p);
            }
            ins.insert(p, "added".into());
            for edited in [sub.join(" "), del.join(" "), ins.join(" ")] {
                if edited != base {
                    assert_eq!(pairs(&[&base, &edited]), [(0, 1)], "{edited}");
                }
            }
        }
    }

    #[test]
    fn two_edits_and_short_texts_stay_apart() {
        // the name differs by two words: distinct documents, as in MedQuAD's templates
        let a = "congenital leptin deficiency is a rare disorder only a few dozen cases have been reported";
        let b = "leptin receptor deficiency is a rare disorder only a few dozen cases have been reported";
        assert!(pairs(&[a, b]).is_empty());
        assert!(pairs(&["a", "b", ""]).is_empty());
    }

    #[test]
    fn big_buckets_still_link_true_duplicates() {
        // every text shares the first half, so all land in one bucket
        let texts: Vec<String> =
            (0..BIG_BUCKET + 10).map(|i| format!("p q r s t u v w x {i} {}", i / 2)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let found = pairs(&refs);
        assert!(found.iter().all(|&(a, b)| within_one_edit(&seq(refs[a as usize]), &seq(refs[b as usize]))));
        assert!(found.contains(&(0, 1)) && found.contains(&(2, 3)));
    }
}
