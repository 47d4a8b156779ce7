//! Near duplicates that differ by one word, among short texts.
//!
//! Shingle Jaccard cannot see these: one substituted word changes up to five
//! word 5-grams, so in a 40-word text the Jaccard falls to about 0.76, below a
//! 0.8 threshold, and no shingle size fixes that without also joining distinct
//! templated documents (see BENCHMARKS.md). Here two word sequences are
//! duplicates when one word substitution, insertion or deletion turns one into
//! the other, checked exactly on the word hashes, and the edit does not swap
//! one word that names or counts something for another, nor add or drop one
//! ([`crate::identifying`]): "hepatitis C" and "hepatitis B", or "type 2" and
//! "type 1", are one word apart and about two different conditions.
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

/// The word counts a text needs for the test, given its shortest
/// (`min_words`; 0 turns the test off, and one word is no sequence to edit).
pub fn word_range(min_words: usize) -> std::ops::Range<usize> {
    if min_words == 0 { 0..0 } else { min_words.max(2)..MAX_WORDS }
}

/// Buckets up to this size are compared all-pairs (at most ~130k checks each,
/// each stopping at the second difference); larger ones, which only crafted
/// input produces, are linked member-to-first and member-to-predecessor to
/// keep the work linear, as the LSH buckets are.
const BIG_BUCKET: usize = 512;

const PREFIX: u64 = 0x5052_4546_4958_0000;
const SUFFIX: u64 = 0x5355_4646_4958_0000;

/// How two word sequences at most one edit apart differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OneEdit {
    Equal,
    /// Word `k` of each is another word.
    Substituted(usize),
    /// Word `k` of `a` is not in `b`.
    OnlyInA(usize),
    /// Word `k` of `b` is not in `a`.
    OnlyInB(usize),
}

/// The index in `long` (one word longer than `short`) of the word whose
/// deletion gives `short`, if there is one.
fn extra_word(long: &[u64], short: &[u64]) -> Option<usize> {
    let same = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    (short[same..] == long[same + 1..]).then_some(same)
}

/// Where `a` and `b` differ when they are equal or one word substitution,
/// insertion or deletion apart; `None` when they are further apart.
pub fn one_edit(a: &[u64], b: &[u64]) -> Option<OneEdit> {
    match a.len() as isize - b.len() as isize {
        0 => {
            let mut diff = a.iter().zip(b).enumerate().filter(|(_, (x, y))| x != y).map(|(k, _)| k);
            match (diff.next(), diff.next()) {
                (None, _) => Some(OneEdit::Equal),
                (Some(k), None) => Some(OneEdit::Substituted(k)),
                _ => None,
            }
        }
        1 => extra_word(a, b).map(OneEdit::OnlyInA),
        -1 => extra_word(b, a).map(OneEdit::OnlyInB),
        _ => None,
    }
}

/// True when `a` and `b` are equal or one word substitution, insertion or
/// deletion apart.
pub fn within_one_edit(a: &[u64], b: &[u64]) -> bool {
    one_edit(a, b).is_some()
}

impl OneEdit {
    /// The index of the word edited in `a` and in `b`, where there is one.
    pub fn edited(self) -> (Option<usize>, Option<usize>) {
        match self {
            OneEdit::Equal => (None, None),
            OneEdit::Substituted(k) => (Some(k), Some(k)),
            OneEdit::OnlyInA(k) => (Some(k), None),
            OneEdit::OnlyInB(k) => (None, Some(k)),
        }
    }
}

/// True when documents `a` and `b` are near duplicates by this test: their
/// words are at most one edit apart, and the edit does not change what names
/// or counts something. A substitution does when it swaps one such word for
/// another ("hepatitis C" / "B", "type 2" / "1", "dominant" / "recessive");
/// swapping an ordinary word for one ("of" / "VCP") is noise in a copy, not
/// another document, and a name for an ordinary word says the same ("type 2"
/// / "type two"). An added or dropped word does when it is such a word
/// ("hepatitis C" / "hepatitis", "is likely" / "is not likely").
/// `names(i, k)`: word `k` of document `i` names or counts something
/// ([`crate::identifying::names_something`] on its text).
fn joins(docs: &[Vec<u64>], a: u32, b: u32, names: &(impl Fn(usize, usize) -> bool + Sync)) -> bool {
    let (a, b) = (a as usize, b as usize);
    one_edit(&docs[a], &docs[b]).is_some_and(|edit| match edit {
        OneEdit::Substituted(k) => !(names(a, k) && names(b, k)),
        _ => {
            let (ka, kb) = edit.edited();
            !ka.is_some_and(|k| names(a, k)) && !kb.is_some_and(|k| names(b, k))
        }
    })
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
/// documents whose word sequences are at most one edit apart, where the edit
/// does not swap one word that names or counts something for another, nor add
/// or drop one: `names(i, k)` says whether word `k` of document `i` names or
/// counts something, asked only about a pair already one word apart.
/// `docs[i]` holds document `i`'s word hashes; an empty one takes no part (the
/// caller empties the texts it leaves to shingle Jaccard).
pub fn one_edit_pairs(docs: &[Vec<u64>], names: impl Fn(usize, usize) -> bool + Sync) -> Vec<u64> {
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
    let mut pairs: Vec<u64> = buckets
        .par_iter()
        .flat_map_iter(|bucket| {
            let mut out = Vec::new();
            if bucket.len() <= BIG_BUCKET {
                for (k, &(_, a)) in bucket.iter().enumerate() {
                    for &(_, b) in &bucket[k + 1..] {
                        if joins(docs, a, b, &names) {
                            out.push(pair_key(a, b));
                        }
                    }
                }
            } else {
                let first = bucket[0].1;
                for w in bucket.windows(2) {
                    for a in [first, w[0].1] {
                        if a != w[1].1 && joins(docs, a, w[1].1, &names) {
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
    use crate::identifying::names_something;
    use crate::shingle::word_hashes;

    fn seq(text: &str) -> Vec<u64> {
        text.split_whitespace().map(crate::shingle::hash_word).collect()
    }

    fn pairs(texts: &[&str]) -> Vec<(u32, u32)> {
        let docs: Vec<Vec<u64>> = texts
            .iter()
            .map(|t| {
                let mut words = Vec::new();
                word_hashes(t, &mut words);
                words
            })
            .collect();
        let names = |i: usize, k: usize| names_something(texts[i], k);
        one_edit_pairs(&docs, names).into_iter().map(|p| ((p >> 32) as u32, p as u32)).collect()
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

    /// An ordinary lowercase word for `i` (letters only, so it names nothing).
    fn word(i: usize) -> String {
        let mut out = String::from("w");
        let mut i = i;
        loop {
            out.push(char::from(b'a' + (i % 26) as u8));
            i /= 26;
            if i == 0 {
                return out;
            }
        }
    }

    #[test]
    fn every_single_edit_position_is_found() {
        let words: Vec<String> = (0..12).map(word).collect();
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

    /// Whether `edited` joins `base` (both given as written).
    fn joined(base: &str, edited: &str) -> bool {
        pairs(&[base, edited]) == [(0, 1)]
    }

    const HEP: &str = "If you have chronic hepatitis C, you should do things to take care of yourself, \
                       including eating a healthy diet.";

    #[test]
    fn a_number_or_a_word_with_a_digit_is_not_an_edit() {
        let t2 = "Otopalatodigital syndrome type 2 is a rare disorder, affecting fewer than 1 in every 100,000 people.";
        assert!(!joined(t2, &t2.replace("type 2", "type 1")));
        // a number swapped for an ordinary word (here the same number, spelled out) is no new name
        assert!(joined(t2, &t2.replace("type 2", "type two")));
        assert!(!joined(t2, &t2.replace("fewer than 1", "fewer than")));
        let pha = "PHA2 is a rare condition; however, the prevalence is unknown in most places.";
        assert!(!joined(pha, &pha.replace("PHA2", "pha3")));
        assert!(joined(t2, &t2.replace("rare", "uncommon")));
    }

    #[test]
    fn a_single_letter_is_not_an_edit_but_the_article_is() {
        assert!(!joined(HEP, &HEP.replace("hepatitis C", "hepatitis B")));
        assert!(!joined(HEP, &HEP.replace("hepatitis C", "hepatitis")));
        assert!(joined(HEP, &HEP.replace("a healthy", "the healthy")));
        assert!(joined(HEP, &HEP.replace("eating a healthy", "eating healthy")));
        assert!(joined(HEP, &HEP.replace("healthy", "helthy"))); // a typo
    }

    #[test]
    fn a_roman_numeral_is_not_an_edit() {
        let m = "Mucolipidosis iii alpha/beta is a rare disorder, although its exact prevalence is unknown.";
        assert!(!joined(m, &m.replace("iii", "ii")));
        assert!(!joined(m, &m.replace("iii", "iv")));
    }

    #[test]
    fn capitals_are_read_on_the_text_as_written() {
        // acronyms, wherever they stand
        let s = "SPENCDI appears to be a rare condition, although its prevalence is unknown.";
        assert!(!joined(s, &s.replace("SPENCDI", "MOPDII")));
        assert!(!joined(s, &s.replace("SPENCDI", "CIPA")));
        // an ordinary word swapped for a name, or back, is a noisy copy: only a name for a name is another document
        assert!(joined(s, &s.replace("rare", "CIPA")));
        assert!(joined(&s.replace("rare", "CIPA"), s));
        // a capitalised word inside a sentence is a name; at its start it is not
        let d = "It is as common as Down syndrome in children of the same age. Most are mild.";
        assert!(!joined(d, &d.replace("Down", "Turner")));
        assert!(joined(d, &d.replace("Most", "Many")));
        // the same words in lowercase name nothing: the case decides, not the word
        assert!(joined(&d.to_lowercase(), &d.to_lowercase().replace("down", "turner")));
        // a case-only copy is no edit at all, whatever its capitals
        assert!(joined(s, &s.to_uppercase()));
    }

    #[test]
    fn negations_and_listed_antonyms_are_not_edits_but_hedges_are() {
        let n = "Autosomal recessive congenital stationary night blindness is likely a rare disease; \
                 however, its prevalence is unknown.";
        assert!(!joined(n, &n.replace("recessive", "dominant")));
        assert!(!joined(n, &n.replace("is likely", "is not likely")));
        let v = "This condition is rare; only a few affected individuals have been reported worldwide.";
        assert!(joined(v, &v.replace("is rare", "is very rare")));
        let t = "This condition is inherited in an autosomal dominant pattern, which means one copy of \
                 the altered gene in each cell is sufficient to cause the disorder.";
        assert!(joined(t, &t.replace("is inherited", "is typically inherited")));
        assert!(joined(t, &t.replace("is inherited", "is probably inherited")));
    }

    #[test]
    fn a_marked_word_is_refused_in_the_bucket_search_too() {
        let b = HEP.replace("hepatitis C", "hepatitis B");
        let typo = HEP.replace("healthy", "helthy");
        assert_eq!(pairs(&[HEP, &b, &typo]), [(0, 2)]);
    }

    #[test]
    fn big_buckets_still_link_true_duplicates() {
        // every text shares the first half, so all land in one bucket
        let texts: Vec<String> = (0..BIG_BUCKET + 10)
            .map(|i| format!("pa qa ra sa ta ua va wa xa {} {}", word(i), word(i / 2)))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let found = pairs(&refs);
        assert!(found.iter().all(|&(a, b)| within_one_edit(&seq(refs[a as usize]), &seq(refs[b as usize]))));
        assert!(found.contains(&(0, 1)) && found.contains(&(2, 3)));
    }
}
