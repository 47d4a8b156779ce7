//! Words that name or count something, which a one-word edit must not change.
//!
//! Two short texts one word apart are near duplicates when that word is a typo
//! or a hedge ("typically", "very"), but distinct documents when it is what
//! tells them apart: "hepatitis C" / "hepatitis B", "type 2" / "type 1",
//! "mucolipidosis III" / "II", "PHA2" / "CIPA", "autosomal recessive" /
//! "dominant". [`identifying_words`] marks those words of one text so that
//! [`crate::edits`] can refuse an edit that touches one. Case is read here, on
//! the text as written: the word hashes the edits compare are lowercased.

/// Texts up to this many words get marks (one bit per word).
pub const MAX_MARKED_WORDS: usize = 128;

/// Words that flip what a sentence says or which kind of a condition it is
/// about, so that swapping, adding or dropping one makes another document:
/// negations, and the antonym pairs that name a condition's kind in medical
/// text (inheritance, tumour, course, test result, sex). Kept short on purpose:
/// hedges ("typically", "many" / "most", "very") are left out, since a copy
/// that changes one of them says the same thing.
const LISTED: &[&str] = &[
    "not", "no", "never", "non", "without", "cannot", // negation
    "dominant", "recessive", "benign", "malignant", "acute", "chronic", "positive", "negative", "male", "female",
];

fn is_word_char(c: char) -> bool {
    // as `shingle::word_hashes` splits words (Python's `\w`)
    c.is_alphanumeric() || c == '_'
}

/// A roman numeral from ii to xxxix (i, v and x alone are single letters).
fn is_roman(lower: &str) -> bool {
    let tail = lower.trim_start_matches('x');
    if lower.len() - tail.len() > 3 {
        return false;
    }
    let units = ["", "i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix"];
    lower.len() >= 2 && units.contains(&tail)
}

/// Whether one word, as written, names or counts something. `sentence_start`:
/// no word before it in its sentence, where a capital says nothing.
fn is_identifying(word: &str, sentence_start: bool) -> bool {
    let mut chars = word.chars();
    let first = chars.next().unwrap_or(' ');
    if word.chars().any(char::is_numeric) {
        return true; // a number, "type 2", "PHA2", "PI3K"
    }
    if chars.next().is_none() {
        return first != 'a'; // a letter: "hepatitis C", "type A"; not the article
    }
    // an acronym or a name written with an inner capital ("CIPA", "McArdle"),
    // or a capitalised word inside a sentence (a proper name)
    if word.chars().skip(1).any(char::is_uppercase) || (first.is_uppercase() && !sentence_start) {
        return true;
    }
    let lower = word.to_lowercase();
    is_roman(&lower) || LISTED.contains(&lower.as_str())
}

/// Bit `k` set when word `k` of `text` (words as [`crate::shingle::word_hashes`]
/// splits them) names or counts something: it holds a digit, is a single
/// letter other than the article "a", a roman numeral (ii to xxxix), an acronym
/// or a capitalised word that does not begin a sentence, or one of a few
/// negations and antonyms. Words past [`MAX_MARKED_WORDS`] are not marked.
pub fn identifying_words(text: &str) -> u128 {
    let mut marks = 0u128;
    let mut k = 0usize;
    let mut start: Option<usize> = None;
    // a sentence begins the text, and after . ! ? : or a line break
    let mut sentence_start = true;
    let mut mark = |word: &str, sentence_start: bool, k: &mut usize| {
        if *k < MAX_MARKED_WORDS && is_identifying(word, sentence_start) {
            marks |= 1u128 << *k;
        }
        *k += 1;
    };
    for (i, c) in text.char_indices() {
        if is_word_char(c) {
            start.get_or_insert(i);
            continue;
        }
        if let Some(s) = start.take() {
            mark(&text[s..i], sentence_start, &mut k);
            sentence_start = false;
        }
        if matches!(c, '.' | '!' | '?' | ':' | '\n') {
            sentence_start = true;
        }
    }
    if let Some(s) = start {
        mark(&text[s..], sentence_start, &mut k);
    }
    marks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(text: &str) -> Vec<&str> {
        let words: Vec<&str> = text.split(|c: char| !is_word_char(c)).filter(|w| !w.is_empty()).collect();
        let marks = identifying_words(text);
        words.into_iter().enumerate().filter(|(k, _)| marks >> k & 1 == 1).map(|(_, w)| w).collect()
    }

    #[test]
    fn numbers_and_words_with_digits() {
        assert_eq!(marked("Spastic paraplegia type 7 is rare, 2 to 6 in 100,000."), ["7", "2", "6", "100", "000"]);
        assert_eq!(marked("pha2 and pi3k"), ["pha2", "pi3k"]);
    }

    #[test]
    fn single_letters_but_not_the_article() {
        assert_eq!(marked("a person with hepatitis C or b"), ["C", "b"]);
        assert_eq!(marked("A rare one."), ["A"]);
    }

    #[test]
    fn roman_numerals() {
        assert_eq!(marked("mucolipidosis iii and ii, type iv, xiv or xxxix"), ["iii", "ii", "iv", "xiv", "xxxix"]);
        assert!(marked("mix vim xxxx iiii vx").is_empty());
    }

    #[test]
    fn capitals_judged_on_the_text_as_written() {
        // acronyms anywhere; a capitalised word only inside a sentence
        assert_eq!(marked("CIPA is rare. Most cases of SPENCDI: Almost all"), ["CIPA", "SPENCDI"]);
        assert_eq!(marked("This condition, like Down syndrome, is rare.\nThis one too"), ["Down"]);
        assert!(marked("cipa is rare").is_empty());
    }

    #[test]
    fn negations_and_listed_antonyms_but_not_hedges() {
        assert_eq!(marked("not autosomal recessive or Dominant"), ["not", "recessive", "Dominant"]);
        assert!(marked("it is typically very rare; many or most probably almost").is_empty());
    }

    #[test]
    fn words_past_the_mask_are_not_marked() {
        let text = format!("{} 7", "w ".repeat(MAX_MARKED_WORDS));
        assert_eq!(identifying_words(&text), u128::MAX);
        let text = format!("{} 7", "x ".repeat(MAX_MARKED_WORDS).replace('x', "word"));
        assert_eq!(identifying_words(&text), 0);
    }
}
