//! Text normalization: Unicode NFKC, control/format character removal,
//! whitespace cleanup that keeps paragraph breaks, optional lowercasing and
//! optional removal of boilerplate lines (page numbers, cookie banners, ...).

use std::borrow::Cow;
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NormalizeOptions {
    pub lowercase: bool,
    pub strip_boilerplate: bool,
}

/// NFKC form of `text`, borrowing when it is already normalized (always for ASCII).
pub fn nfkc(text: &str) -> Cow<'_, str> {
    if text.is_ascii() || is_nfkc_quick(text.chars()) == IsNormalized::Yes {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.nfkc().collect())
    }
}

/// Invisible "format" characters that carry no text: soft hyphen, zero-width
/// spaces and joiners, bidi controls, word joiner, BOM.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

/// Control characters other than whitespace, and invisible format characters.
fn is_invisible(c: char) -> bool {
    (c.is_control() && !c.is_whitespace()) || is_invisible_format(c)
}

/// `text` without invisible characters, borrowed when it has none. This runs
/// before NFKC: dropping a character between a letter and a combining mark
/// after composition would leave an uncomposed pair behind.
fn drop_invisible(text: &str) -> Cow<'_, str> {
    let has_invisible = if text.is_ascii() {
        // the common case, byte by byte: C0 controls other than whitespace, and DEL
        text.bytes().any(|b| (b < 0x20 && !b.is_ascii_whitespace() && b != 0x0B) || b == 0x7F)
    } else {
        text.chars().any(is_invisible)
    };
    if has_invisible {
        Cow::Owned(text.chars().filter(|&c| !is_invisible(c)).collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// Cleans one text: control and invisible format characters are dropped;
/// NFKC; CRLF and lone CR become LF; tabs and other Unicode spaces become a
/// space; runs of spaces collapse to one; lines are trimmed; three or more
/// line breaks collapse to a paragraph break; the result is trimmed.
/// Normalizing twice gives the same text as normalizing once.
pub fn normalize(text: &str, opts: NormalizeOptions) -> String {
    let visible = drop_invisible(text);
    let composed = nfkc(&visible);
    let mut out = collapse_whitespace(&composed, opts.lowercase);
    if opts.lowercase && !out.is_ascii() {
        // a few lowercase mappings leave sequences that NFKC composes
        if let Cow::Owned(recomposed) = nfkc(&out) {
            out = recomposed;
        }
    }
    if opts.strip_boilerplate {
        out = strip_boilerplate_lines(&out);
    }
    out
}

fn collapse_whitespace(text: &str, lowercase: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    let mut pending_newlines = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(mut c) = chars.next() {
        if c == '\r' {
            if chars.peek() == Some(&'\n') {
                continue; // the LF that follows stands for the pair
            }
            c = '\n';
        }
        if c == '\n' {
            pending_newlines += 1;
            pending_space = false; // trailing spaces of a line are dropped
            continue;
        }
        if c.is_whitespace() {
            pending_space = true;
            continue;
        }
        if !out.is_empty() {
            if pending_newlines > 0 {
                out.push_str(if pending_newlines >= 2 { "\n\n" } else { "\n" });
            } else if pending_space {
                out.push(' ');
            }
        }
        pending_newlines = 0;
        pending_space = false;
        if lowercase {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Lines this short or shorter may be boilerplate; longer lines are content.
const BOILERPLATE_MAX_LINE: usize = 120;

const BOILERPLATE_PHRASES: &[&str] = &[
    "all rights reserved",
    "skip to main content",
    "skip to content",
    "back to top",
    "click here",
    "cookie policy",
    "we use cookies",
    "accept cookies",
    "privacy policy",
    "terms of use",
    "terms of service",
    "print this page",
    "share this page",
    "follow us on",
    "subscribe to our newsletter",
    "sign up for our newsletter",
];

/// True for a short line that is navigation, legal or layout debris rather than content.
pub fn is_boilerplate_line(line: &str) -> bool {
    let line = line.trim();
    if line.is_empty() || line.chars().count() > BOILERPLATE_MAX_LINE {
        return false;
    }
    if !line.chars().any(char::is_alphanumeric) {
        return true; // rules such as "-----" or "* * *"
    }
    let lower = line.to_lowercase();
    if (lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("www."))
        && !lower.contains(' ')
    {
        return true;
    }
    if lower.starts_with("copyright") || lower.starts_with('©') || lower.starts_with("(c) ") {
        return true;
    }
    if is_page_number(&lower) {
        return true;
    }
    BOILERPLATE_PHRASES.iter().any(|p| lower.contains(p))
}

/// "12", "page 3", "page 3 of 10", "3 / 10", "- 4 -".
fn is_page_number(lower: &str) -> bool {
    let rest = lower.strip_prefix("page").unwrap_or(lower);
    let mut saw_digit = false;
    for word in rest.split(|c: char| c.is_whitespace() || c == '/' || c == '-') {
        if word.is_empty() || word == "of" {
            continue;
        }
        if word.chars().all(|c| c.is_ascii_digit()) {
            saw_digit = true;
        } else {
            return false;
        }
    }
    saw_digit
}

fn strip_boilerplate_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0usize;
    for line in text.split('\n') {
        if is_boilerplate_line(line) {
            continue;
        }
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        if !out.is_empty() || !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    while out.ends_with('\n') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(t: &str) -> String {
        normalize(t, NormalizeOptions::default())
    }

    #[test]
    fn nfkc_folds_compatibility_characters() {
        assert_eq!(plain("ﬁne ＡＢＣ ①"), "fine ABC 1");
    }

    #[test]
    fn whitespace_collapses_but_paragraphs_survive() {
        assert_eq!(plain("  a \t b  \r\n\r\n\r\n\n c\u{00A0}d \n e  "), "a b\n\nc d\ne");
    }

    #[test]
    fn control_and_invisible_characters_are_dropped() {
        assert_eq!(plain("a\u{0000}b\u{200B}c\u{FEFF}d\u{0007}"), "abcd");
    }

    #[test]
    fn lowercase_is_optional() {
        let opts = NormalizeOptions { lowercase: true, strip_boilerplate: false };
        assert_eq!(normalize("Hello ÉCOLE", opts), "hello école");
        assert_eq!(plain("Hello"), "Hello");
    }

    #[test]
    fn boilerplate_lines_are_removed_content_kept() {
        let opts = NormalizeOptions { lowercase: false, strip_boilerplate: true };
        let text = "Skip to main content\nAsthma is a disease.\nPage 3 of 10\n-----\n\nIt affects airways.\n© 2024 Clinic. All rights reserved.\nhttps://example.org/x";
        assert_eq!(normalize(text, opts), "Asthma is a disease.\n\nIt affects airways.");
    }

    #[test]
    fn empty_and_blank_inputs_give_empty_output() {
        assert_eq!(plain(""), "");
        assert_eq!(plain(" \n\t\r\n "), "");
    }

    #[test]
    fn normalization_is_idempotent() {
        let samples = ["  A  b\n\n\n\nc ", "ﬁ\u{200B}x\r\ny", "Page 2\nreal text", "e\u{200B}\u{0301}", "A\u{0000}\u{030A}"];
        for s in samples {
            for opts in [NormalizeOptions::default(), NormalizeOptions { lowercase: true, strip_boilerplate: true }] {
                let once = normalize(s, opts);
                assert_eq!(normalize(&once, opts), once, "{s:?}");
            }
        }
    }
}
