//! Text → MinHash signature, with the settings that must match between the
//! documents of one collection (so they are stored with a persisted index).

use crate::edits;
use crate::identifying::names_something;
use crate::minhash::MinHasher;
use crate::normalize::{nfkc, normalize, NormalizeOptions};
use crate::shingle::{shingle_hashes, word_hashes, Shingles};
use rayon::prelude::*;
use std::borrow::Cow;
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FingerprintConfig {
    pub num_perm: usize,
    pub seed: u64,
    pub shingles: Shingles,
    /// Applied before shingling. Shingling already ignores case, spacing and
    /// punctuation; NFKC is always applied.
    pub normalize: NormalizeOptions,
}

impl Default for FingerprintConfig {
    fn default() -> Self {
        FingerprintConfig {
            num_perm: 128,
            seed: 1,
            shingles: Shingles::Words(5),
            normalize: NormalizeOptions::default(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Fingerprinter {
    config: FingerprintConfig,
    hasher: MinHasher,
}

impl Fingerprinter {
    pub fn new(config: FingerprintConfig) -> crate::Result<Self> {
        let hasher = MinHasher::new(config.num_perm, config.seed)?;
        Ok(Fingerprinter { config, hasher })
    }

    pub fn config(&self) -> &FingerprintConfig {
        &self.config
    }

    pub fn num_perm(&self) -> usize {
        self.config.num_perm
    }

    /// `text` as the words of [`Self::signatures_and_words`] are read from it,
    /// case kept: where a word's case can be read, as
    /// [`crate::identifying::names_something`] does.
    pub fn cased_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let opts = self.config.normalize;
        if opts.strip_boilerplate {
            Cow::Owned(normalize(text, NormalizeOptions { lowercase: false, ..opts }))
        } else {
            nfkc(text)
        }
    }

    /// `text` as shingles and words are read from it. Shingles fold case and
    /// spacing themselves, so only boilerplate stripping needs the full
    /// normalizer; NFKC alone is much cheaper.
    fn clean<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.config.normalize.strip_boilerplate {
            Cow::Owned(normalize(text, self.config.normalize))
        } else {
            nfkc(text)
        }
    }

    /// The signature of `text` into `out`; with `words` set, also its word
    /// hashes when their count is in `words_for` (`words` must be empty).
    fn signature_with(
        &self,
        text: &str,
        out: &mut [u32],
        shingles: &mut Vec<u64>,
        scratch: &mut Vec<u64>,
        words: Option<(&mut Vec<u64>, &Range<usize>)>,
    ) {
        let clean = self.clean(text);
        shingle_hashes(&clean, self.config.shingles, shingles, scratch);
        self.hasher.signature_into(shingles, out);
        if let Some((words, words_for)) = words {
            // word shingling has just hashed the words into `scratch`
            if let Shingles::Chars(_) = self.config.shingles {
                word_hashes(&clean, scratch);
            }
            if words_for.contains(&scratch.len()) {
                words.extend_from_slice(scratch);
            }
        }
    }

    /// The signature of one text.
    pub fn signature(&self, text: &str) -> Vec<u32> {
        let mut out = vec![0; self.num_perm()];
        self.signature_with(text, &mut out, &mut Vec::new(), &mut Vec::new(), None);
        out
    }

    /// Signatures of a batch, computed in parallel, as one row-major
    /// `texts.len() × num_perm` buffer.
    pub fn signatures(&self, texts: &[&str]) -> Vec<u32> {
        let k = self.num_perm();
        let mut out = vec![0u32; texts.len() * k];
        out.par_chunks_mut(k)
            .zip(texts.par_iter())
            .for_each_init(
                || (Vec::new(), Vec::new()),
                |(shingles, scratch), (row, text)| self.signature_with(text, row, shingles, scratch, None),
            );
        out
    }

    /// As [`Self::signatures`], with the word hashes ([`word_hashes`]) of each
    /// text whose word count is in `words_for` and an empty list for the others,
    /// from the same pass over the text.
    pub fn signatures_and_words(&self, texts: &[&str], words_for: Range<usize>) -> (Vec<u32>, Vec<Vec<u64>>) {
        let k = self.num_perm();
        let mut out = vec![0u32; texts.len() * k];
        let mut words = vec![Vec::new(); texts.len()];
        out.par_chunks_mut(k)
            .zip(words.par_iter_mut())
            .zip(texts.par_iter())
            .for_each_init(
                || (Vec::new(), Vec::new()),
                |(shingles, scratch), ((row, words), text)| {
                    self.signature_with(text, row, shingles, scratch, Some((words, &words_for)));
                },
            );
        (out, words)
    }

    /// The word hashes of each text whose word count is in `words_for`, an
    /// empty list for the others: the words of [`Self::signatures_and_words`]
    /// without the signatures.
    pub fn words(&self, texts: &[&str], words_for: Range<usize>) -> Vec<Vec<u64>> {
        texts
            .par_iter()
            .map(|text| {
                let mut words = Vec::new();
                word_hashes(&self.clean(text), &mut words);
                if words_for.contains(&words.len()) { words } else { Vec::new() }
            })
            .collect()
    }

    /// [`edits::one_edit_pairs`] of `texts`, whose words `words` are (from
    /// [`Self::signatures_and_words`] or [`Self::words`]); the word edited is
    /// judged on its text as written, for the few pairs one word apart.
    pub fn one_edit_pairs(&self, texts: &[&str], words: &[Vec<u64>]) -> Vec<u64> {
        edits::one_edit_pairs(words, |i, k| names_something(&self.cased_text(texts[i]), k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::minhash::estimated_jaccard;

    #[test]
    fn batch_equals_single() {
        let f = Fingerprinter::new(FingerprintConfig::default()).unwrap();
        let texts = ["one two three four five six", "", "ﬁve six seven eight nine ten"];
        let batch = f.signatures(&texts);
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(&batch[i * 128..(i + 1) * 128], f.signature(t).as_slice());
        }
    }

    #[test]
    fn case_spacing_punctuation_and_compatibility_forms_do_not_matter() {
        let f = Fingerprinter::new(FingerprintConfig::default()).unwrap();
        let a = f.signature("The quick brown fox jumps over the lazy dog, twice.");
        let b = f.signature("the  QUICK brown fox; jumps over the lazy dog twice");
        let c = f.signature("ｔｈｅ quick brown fox jumps over the lazy dog twice");
        assert_eq!(estimated_jaccard(&a, &b), 1.0);
        assert_eq!(estimated_jaccard(&a, &c), 1.0);
    }

    #[test]
    fn words_come_with_the_signatures_of_texts_in_range() {
        let texts = ["One, two THREE", "one two", "a b c d e f g", ""];
        for shingles in [Shingles::Words(5), Shingles::Chars(4)] {
            let f = Fingerprinter::new(FingerprintConfig { shingles, ..FingerprintConfig::default() }).unwrap();
            let (sigs, words) = f.signatures_and_words(&texts, 3..7);
            assert_eq!(sigs, f.signatures(&texts));
            let mut expected = Vec::new();
            word_hashes("one two three", &mut expected);
            assert_eq!(words[0], expected);
            assert!(words[1].is_empty() && words[2].is_empty() && words[3].is_empty());
            assert_eq!(f.cased_text(texts[0]), texts[0]);
            assert_eq!(f.words(&texts, 3..7), words);
        }
    }

    #[test]
    fn one_edit_pairs_read_the_edited_word_as_written() {
        let f = Fingerprinter::new(FingerprintConfig::default()).unwrap();
        let base = "If you have chronic hepatitis C, you should take care of yourself, including a healthy diet.";
        let texts = [base, &base.replace("healthy", "helthy"), &base.replace("hepatitis C", "hepatitis B")];
        let words = f.words(&texts, edits::word_range(10));
        assert_eq!(f.one_edit_pairs(&texts, &words), [1]); // (0, 1) only
        assert!(f.words(&texts, edits::word_range(0)).iter().all(Vec::is_empty));
    }
}
