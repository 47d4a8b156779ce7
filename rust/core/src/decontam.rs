//! Decontamination: which tuning examples share word n-grams with evaluation items.
//!
//! Words are the lowercased `\w+` runs of [`crate::shingle`], so case, spacing
//! and punctuation never hide an overlap. Every `ngram`-word window of every
//! eval item goes into a table; an eval item shorter than `ngram` words (but
//! with at least `min_words`) goes in whole, as one n-gram of its own length,
//! and train texts are then also scanned with windows of that length. Train
//! texts are scanned in parallel against the read-only tables.

use crate::shingle::{combine_hashes, word_hashes};
use crate::CoreError;
use rayon::prelude::*;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecontamOptions {
    /// n-gram length in words (13 by default, as in GPT-3's contamination study).
    pub ngram: usize,
    /// Eval items shorter than `ngram` words are matched as one whole n-gram
    /// when they have at least this many words; shorter ones are skipped.
    pub min_words: usize,
}

impl Default for DecontamOptions {
    fn default() -> Self {
        DecontamOptions { ngram: 13, min_words: 8 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlap {
    pub train_index: usize,
    /// Sorted, distinct.
    pub eval_indices: Vec<usize>,
    /// Distinct n-grams of the train example that occur in some eval item.
    pub shared_ngrams: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecontamReport {
    /// Only contaminated train examples, by ascending `train_index`.
    pub overlaps: Vec<Overlap>,
    /// Eval items too short to check (fewer than `min_words` words).
    pub skipped_eval: usize,
}

/// The eval n-grams of one window length: hash → the eval items containing it.
///
/// Postings live in one flat array (most n-grams belong to a single item, so a
/// `Vec` per n-gram would mostly be allocation overhead).
struct NgramTable {
    len: usize,
    /// hash → (start, length) in `postings`.
    spans: HashMap<u64, (usize, usize)>,
    postings: Vec<u32>,
}

impl NgramTable {
    /// Builds the table from `(hash, eval index)` pairs.
    fn new(len: usize, mut pairs: Vec<(u64, u32)>) -> Self {
        pairs.par_sort_unstable();
        pairs.dedup();
        let mut spans = HashMap::with_capacity(pairs.len());
        let postings: Vec<u32> = pairs.iter().map(|&(_, e)| e).collect();
        let mut start = 0;
        for run in pairs.chunk_by(|a, b| a.0 == b.0) {
            spans.insert(run[0].0, (start, run.len()));
            start += run.len();
        }
        NgramTable { len, spans, postings }
    }

    fn get(&self, hash: u64) -> Option<&[u32]> {
        self.spans.get(&hash).map(|&(start, len)| &self.postings[start..start + len])
    }
}

fn check_options(opts: DecontamOptions, num_eval: usize) -> crate::Result<()> {
    if opts.ngram == 0 || opts.min_words == 0 {
        return Err(CoreError::invalid(format!(
            "ngram and min_words must both be at least 1, got ngram={} min_words={}",
            opts.ngram, opts.min_words
        )));
    }
    if opts.min_words > opts.ngram {
        return Err(CoreError::invalid(format!(
            "min_words must be <= ngram, got min_words={} ngram={}",
            opts.min_words, opts.ngram
        )));
    }
    if u32::try_from(num_eval).is_err() {
        return Err(CoreError::invalid(format!("at most {} eval items are supported, got {num_eval}", u32::MAX)));
    }
    Ok(())
}

/// The n-gram tables of the eval set (the `ngram` table first, then one per
/// short length present) and the number of eval items skipped as too short.
fn eval_tables(eval: &[&str], opts: DecontamOptions) -> (Vec<NgramTable>, usize) {
    let words: Vec<Vec<u64>> = eval
        .par_iter()
        .map(|text| {
            let mut w = Vec::new();
            word_hashes(text, &mut w);
            w
        })
        .collect();
    let mut full: Vec<(u64, u32)> = Vec::new();
    // Whole short items, by length; a BTreeMap keeps the table order deterministic.
    let mut short: std::collections::BTreeMap<usize, Vec<(u64, u32)>> = Default::default();
    let mut skipped = 0;
    for (i, w) in words.iter().enumerate() {
        let i = i as u32;
        if w.len() >= opts.ngram {
            full.extend(w.windows(opts.ngram).map(|win| (combine_hashes(win), i)));
        } else if w.len() >= opts.min_words {
            short.entry(w.len()).or_default().push((combine_hashes(w), i));
        } else {
            skipped += 1;
        }
    }
    let mut tables = vec![NgramTable::new(opts.ngram, full)];
    tables.extend(short.into_iter().map(|(len, pairs)| NgramTable::new(len, pairs)));
    (tables, skipped)
}

/// The overlap of one train text's words with the eval tables, if any.
/// `hits` and `shared` are scratch buffers reused across texts.
fn scan(words: &[u64], tables: &[NgramTable], hits: &mut Vec<u32>, shared: &mut Vec<u64>) -> Option<(Vec<usize>, usize)> {
    hits.clear();
    let mut shared_ngrams = 0;
    for table in tables {
        if words.len() < table.len || table.spans.is_empty() {
            continue;
        }
        shared.clear();
        for win in words.windows(table.len) {
            let h = combine_hashes(win);
            if let Some(evals) = table.get(h) {
                shared.push(h);
                hits.extend_from_slice(evals);
            }
        }
        // A repeated n-gram counts once; n-grams of different lengths are different n-grams.
        shared.sort_unstable();
        shared.dedup();
        shared_ngrams += shared.len();
    }
    if hits.is_empty() {
        return None;
    }
    hits.sort_unstable();
    hits.dedup();
    Some((hits.iter().map(|&e| e as usize).collect(), shared_ngrams))
}

pub fn find_overlaps(train: &[&str], eval: &[&str], opts: DecontamOptions) -> crate::Result<DecontamReport> {
    check_options(opts, eval.len())?;
    let (tables, skipped_eval) = eval_tables(eval, opts);
    let overlaps = train
        .par_iter()
        .enumerate()
        .map_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(words, hits, shared), (train_index, text)| {
                word_hashes(text, words);
                let (eval_indices, shared_ngrams) = scan(words, &tables, hits, shared)?;
                Some(Overlap { train_index, eval_indices, shared_ngrams })
            },
        )
        .flatten()
        .collect();
    Ok(DecontamReport { overlaps, skipped_eval })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSAGE: &str = "The mitochondria is the powerhouse of the cell and it produces most of \
        the chemical energy needed to power the biochemical reactions of the cell";

    fn run(train: &[&str], eval: &[&str]) -> DecontamReport {
        find_overlaps(train, eval, DecontamOptions::default()).unwrap()
    }

    #[test]
    fn copied_passage_inside_longer_text_is_found() {
        let train = format!("Some unrelated introduction here. {PASSAGE}. And then a conclusion follows.");
        let r = run(&["nothing to see here at all", &train], &[PASSAGE]);
        assert_eq!(r.overlaps.len(), 1);
        let o = &r.overlaps[0];
        assert_eq!((o.train_index, o.eval_indices.as_slice()), (1, [0].as_slice()));
        let words = PASSAGE.split_whitespace().count();
        assert_eq!(o.shared_ngrams, words - 13 + 1);
        assert_eq!(r.skipped_eval, 0);
    }

    #[test]
    fn one_changed_word_in_every_window_is_not_found() {
        // 25 words with the 13th changed: every 13-word window contains it.
        let words: Vec<String> = (0..25).map(|i| format!("word{i}")).collect();
        let eval = words.join(" ");
        let mut changed = words.clone();
        changed[12] = "different".into();
        let r = run(&[&changed.join(" ")], &[&eval]);
        assert!(r.overlaps.is_empty());
        // changing a word near the end leaves the first window intact
        let mut late = words.clone();
        late[24] = "different".into();
        assert_eq!(run(&[&late.join(" ")], &[&eval]).overlaps[0].shared_ngrams, 12);
    }

    #[test]
    fn case_and_punctuation_do_not_matter() {
        let shouted = PASSAGE.to_uppercase().replace(' ', " ... ");
        let r = run(&[&shouted], &[PASSAGE]);
        assert_eq!(r.overlaps.len(), 1);
    }

    #[test]
    fn short_eval_item_is_matched_whole() {
        let question = "What is the capital city of the Republic of France?"; // 10 words
        let train = "Quiz time. Q: what is the capital city of the republic of france? A: Paris.";
        let r = run(&[train, "what is the capital city of Germany"], &[question]);
        assert_eq!(r.overlaps.len(), 1);
        assert_eq!((r.overlaps[0].train_index, r.overlaps[0].shared_ngrams), (0, 1));
    }

    #[test]
    fn too_short_eval_items_are_skipped_and_counted() {
        let r = run(&["yes no maybe so"], &["yes no maybe", PASSAGE, ""]);
        assert_eq!(r.skipped_eval, 2);
        assert!(r.overlaps.is_empty());
    }

    #[test]
    fn multiple_eval_hits_are_sorted_and_distinct() {
        let other = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron";
        let train = format!("{other} and {PASSAGE} and again {PASSAGE}");
        let eval = [PASSAGE, "completely unrelated evaluation text that is long enough to matter here", other, PASSAGE];
        let r = run(&["clean", &train], &eval);
        assert_eq!(r.overlaps.len(), 1);
        assert_eq!(r.overlaps[0].train_index, 1);
        assert_eq!(r.overlaps[0].eval_indices, [0, 2, 3]);
        let passage_windows = PASSAGE.split_whitespace().count() - 12;
        assert_eq!(r.overlaps[0].shared_ngrams, passage_windows + 3);
    }

    #[test]
    fn empty_inputs() {
        assert_eq!(run(&[], &[PASSAGE]).overlaps, []);
        assert_eq!(run(&[PASSAGE], &[]), DecontamReport { overlaps: vec![], skipped_eval: 0 });
        assert_eq!(run(&["", " ,. "], &["", PASSAGE]).skipped_eval, 1);
    }

    #[test]
    fn invalid_options_are_errors() {
        for (ngram, min_words) in [(0, 0), (13, 0), (0, 1), (5, 8)] {
            assert!(find_overlaps(&[], &[], DecontamOptions { ngram, min_words }).is_err(), "{ngram} {min_words}");
        }
        let unigram = DecontamOptions { ngram: 1, min_words: 1 };
        let r = find_overlaps(&["Hello world"], &["WORLD"], unigram).unwrap();
        assert_eq!(r.overlaps[0].eval_indices, [0]);
    }
}
