//! Shingling: a text becomes the set of hashes of its word n-grams or
//! character n-grams. Words are runs of Unicode alphanumerics and `_`
//! (Python's `\w+`), lowercased, so case, spacing and punctuation do not
//! change the shingles.

use xxhash_rust::xxh3::xxh3_64;

const WORD_HASH_SEED: u64 = 0xCBF2_9CE4_8422_2325;
const WORD_HASH_PRIME: u64 = 0x0000_0100_0000_01B3;

/// FNV-1a over the lowercased UTF-8 bytes of a word. Byte-at-a-time so the
/// ASCII fast path can hash while it scans; [`combine_hashes`] mixes the
/// result well, so the weak avalanche of FNV does not matter.
#[inline(always)]
fn hash_word_byte(h: u64, b: u8) -> u64 {
    (h ^ b as u64).wrapping_mul(WORD_HASH_PRIME)
}

/// The hash of one (already lowercased) word.
pub fn hash_word(word: &str) -> u64 {
    word.bytes().fold(WORD_HASH_SEED, hash_word_byte)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shingles {
    /// n consecutive words.
    Words(usize),
    /// n consecutive characters of the lowercased, space-collapsed text.
    Chars(usize),
}

impl Shingles {
    pub fn new(kind: &str, size: usize) -> crate::Result<Self> {
        if size == 0 || size > 64 {
            return Err(crate::CoreError::invalid(format!("shingle size must be in 1..=64, got {size}")));
        }
        match kind {
            "word" | "words" => Ok(Shingles::Words(size)),
            "char" | "chars" => Ok(Shingles::Chars(size)),
            other => Err(crate::CoreError::invalid(format!("shingle kind must be 'word' or 'char', got {other:?}"))),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Shingles::Words(_) => "word",
            Shingles::Chars(_) => "char",
        }
    }

    pub fn size(&self) -> usize {
        match self {
            Shingles::Words(n) | Shingles::Chars(n) => *n,
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Calls `f` with each lowercased word of `text` (runs of `\w`).
pub fn for_each_word(text: &str, mut f: impl FnMut(&str)) {
    let mut lowered = String::new();
    let mut start: Option<usize> = None;
    let mut emit = |word: &str, lowered: &mut String| {
        if word.bytes().any(|b| b.is_ascii_uppercase() || b >= 0x80) {
            lowered.clear();
            lowered.extend(word.chars().flat_map(char::to_lowercase));
            f(lowered);
        } else {
            f(word);
        }
    };
    for (i, c) in text.char_indices() {
        if is_word_char(c) {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            emit(&text[s..i], &mut lowered);
        }
    }
    if let Some(s) = start {
        emit(&text[s..], &mut lowered);
    }
}

/// Hashes ([`hash_word`]) of the lowercased words of `text`, in order.
pub fn word_hashes(text: &str, out: &mut Vec<u64>) {
    out.clear();
    if text.is_ascii() {
        ascii_word_hashes(text.as_bytes(), out);
    } else {
        for_each_word(text, |w| out.push(hash_word(w)));
    }
}

/// The common case, without decoding characters or copying words: the same
/// hashes as the general path gives for ASCII text.
fn ascii_word_hashes(bytes: &[u8], out: &mut Vec<u64>) {
    let mut h = WORD_HASH_SEED;
    let mut in_word = false;
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b == b'_' {
            h = hash_word_byte(h, b.to_ascii_lowercase());
            in_word = true;
        } else if in_word {
            out.push(h);
            h = WORD_HASH_SEED;
            in_word = false;
        }
    }
    if in_word {
        out.push(h);
    }
}

/// Order-sensitive combination of consecutive word hashes into one shingle hash.
pub fn combine_hashes(words: &[u64]) -> u64 {
    let mut h: u64 = 0x243F_6A88_85A3_08D3;
    for &w in words {
        h = (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
    // splitmix64 finalizer so that nearby inputs spread over all bits
    h ^= h >> 30;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// Shingle hashes of `text` into `out` (cleared first). A text with fewer
/// words (or characters) than the shingle size gives one shingle of all of
/// them; a text with none gives none. `scratch` is reused between calls; after
/// word shingling it holds the text's word hashes ([`word_hashes`]).
pub fn shingle_hashes(text: &str, kind: Shingles, out: &mut Vec<u64>, scratch: &mut Vec<u64>) {
    out.clear();
    match kind {
        Shingles::Words(n) => {
            word_hashes(text, scratch);
            if scratch.is_empty() {
                return;
            }
            if n == 1 {
                out.extend_from_slice(scratch);
            } else if scratch.len() <= n {
                out.push(combine_hashes(scratch));
            } else {
                out.extend(scratch.windows(n).map(combine_hashes));
            }
        }
        Shingles::Chars(n) => {
            let mut folded = String::with_capacity(text.len());
            for_each_char_folded(text, |c| folded.push(c));
            let bounds: Vec<usize> = folded.char_indices().map(|(i, _)| i).chain([folded.len()]).collect();
            let chars = bounds.len() - 1;
            if chars == 0 {
                return;
            }
            if chars <= n {
                out.push(xxh3_64(folded.as_bytes()));
                return;
            }
            for i in 0..=chars - n {
                out.push(xxh3_64(&folded.as_bytes()[bounds[i]..bounds[i + n]]));
            }
        }
    }
}

/// Lowercased characters with every whitespace run folded to one space and the ends trimmed.
fn for_each_char_folded(text: &str, mut f: impl FnMut(char)) {
    let mut pending_space = false;
    let mut started = false;
    for c in text.chars() {
        if c.is_whitespace() {
            pending_space = started;
            continue;
        }
        if pending_space {
            f(' ');
            pending_space = false;
        }
        started = true;
        for l in c.to_lowercase() {
            f(l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shingles(text: &str, kind: Shingles) -> Vec<u64> {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        shingle_hashes(text, kind, &mut out, &mut scratch);
        out
    }

    #[test]
    fn words_ignore_case_spacing_and_punctuation() {
        let mut words = Vec::new();
        for_each_word("Hello,  WORLD! snake_case Ünïcode 42", |w| words.push(w.to_string()));
        assert_eq!(words, ["hello", "world", "snake_case", "ünïcode", "42"]);
        let k = Shingles::Words(2);
        assert_eq!(shingles("The cat, sat!", k), shingles("the   CAT sat", k));
    }

    #[test]
    fn word_shingle_counts() {
        assert_eq!(shingles("a b c d e", Shingles::Words(3)).len(), 3);
        assert_eq!(shingles("a b", Shingles::Words(3)).len(), 1);
        assert!(shingles(" ,.; ", Shingles::Words(3)).is_empty());
        assert_eq!(shingles("a b c", Shingles::Words(1)).len(), 3);
    }

    #[test]
    fn ascii_fast_path_matches_the_general_path() {
        let text = "The CAT_2 sat, on... the mat!";
        let mut fast = Vec::new();
        word_hashes(text, &mut fast);
        let mut general = Vec::new();
        for_each_word(text, |w| general.push(hash_word(w)));
        assert_eq!(fast, general);
        // an accented word elsewhere in the text does not change the other words' hashes
        let mut mixed = Vec::new();
        word_hashes("the cat_2 sat on the mat école", &mut mixed);
        assert_eq!(&mixed[..6], &fast[..]);
    }

    #[test]
    fn word_order_matters() {
        assert_ne!(shingles("a b", Shingles::Words(2)), shingles("b a", Shingles::Words(2)));
    }

    #[test]
    fn char_shingles_fold_whitespace_and_case() {
        let k = Shingles::Chars(3);
        assert_eq!(shingles("Ab  c", k), shingles("ab c", k));
        assert_eq!(shingles("abcd", k).len(), 2);
        assert_eq!(shingles("ab", k).len(), 1);
        assert!(shingles("  ", k).is_empty());
        assert_eq!(shingles("héllo", k).len(), 3);
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(Shingles::new("word", 0).is_err());
        assert!(Shingles::new("token", 3).is_err());
        assert_eq!(Shingles::new("char", 5).unwrap(), Shingles::Chars(5));
    }
}
