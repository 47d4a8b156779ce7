//! Words that name or count something, which a one-word edit must not change.
//!
//! Two short texts one word apart are near duplicates when that word is a typo
//! or a hedge ("typically", "very"), but distinct documents when it is what
//! tells them apart: "hepatitis C" / "hepatitis B", "type 2" / "type 1",
//! "mucolipidosis III" / "II", "PHA2" / "CIPA", "autosomal recessive" /
//! "dominant". [`names_something`] tells whether one word of a text is such
//! a word, so that [`crate::edits`] can refuse an edit that swaps one for
//! another, or adds or drops one. Case
//! is read here, on the text as written: the word hashes the edits compare are
//! lowercased. It is asked only about the word edited in a pair already found
//! one word apart, so it costs nothing on the texts that have no such partner.

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

/// The words of `text` as [`crate::shingle::word_hashes`] splits them, as
/// written, each with whether it begins a sentence: the text's first word and
/// any after . ! ? : or a line break.
fn words_in_context(text: &str) -> impl Iterator<Item = (&str, bool)> {
    let mut sentence_start = true;
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find(is_word_char)?;
        if rest[..start].contains(['.', '!', '?', ':', '\n']) {
            sentence_start = true;
        }
        let len = rest[start..].find(|c: char| !is_word_char(c)).unwrap_or(rest.len() - start);
        let word = &rest[start..start + len];
        rest = &rest[start + len..];
        let begins = std::mem::replace(&mut sentence_start, false);
        Some((word, begins))
    })
}

/// Whether word `k` of `text` (words as [`crate::shingle::word_hashes`] splits
/// them; `text` not lowercased) names or counts something: it holds a digit, is
/// a single letter other than the article "a", a roman numeral (ii to xxxix),
/// an acronym or a capitalised word that does not begin a sentence, or one of
/// a few negations and antonyms. False past the last word.
pub fn names_something(text: &str, k: usize) -> bool {
    words_in_context(text).nth(k).is_some_and(|(word, begins)| is_identifying(word, begins))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(text: &str) -> Vec<&str> {
        let words: Vec<&str> = text.split(|c: char| !is_word_char(c)).filter(|w| !w.is_empty()).collect();
        words.into_iter().enumerate().filter(|&(k, _)| names_something(text, k)).map(|(_, w)| w).collect()
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
    fn words_are_split_and_counted_as_the_hashes_are() {
        let text = "Él naît—à Paris_2, l'été; IV.\nOK";
        let mut hashes = Vec::new();
        crate::shingle::word_hashes(text, &mut hashes);
        assert_eq!(words_in_context(text).count(), hashes.len());
        // single letters (à, l) and the acronym after a line break count too
        assert_eq!(marked(text), ["à", "Paris_2", "l", "IV", "OK"]);
        assert!(!names_something(text, hashes.len()));
    }
}
