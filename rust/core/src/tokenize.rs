//! A `tokenizer.json` loaded with the `tokenizers` crate, for batch encoding.
//!
//! Encoding never adds special tokens through the post-processor (no BOS/EOS
//! templates); special tokens written literally in the text (added tokens such
//! as `<|im_start|>`) still become their ids, as with Hugging Face tokenizers.
//! Batches are encoded with rayon on the caller's thread pool, one text per
//! task, so the `TOKENIZERS_PARALLELISM` environment variable plays no part.

use rayon::prelude::*;
use std::path::Path;
use std::str::FromStr;

use crate::CoreError;

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
}

impl TextTokenizer {
    /// Loads a `tokenizer.json`; a missing or unreadable file is an I/O error,
    /// a file that does not parse is a tokenizer error.
    pub fn from_file(path: &Path) -> crate::Result<Self> {
        let json = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
        tokenizers::Tokenizer::from_str(&json)
            .map(Self::from_inner)
            .map_err(|e| CoreError::Tokenizer(format!("cannot load tokenizer.json at {}: {e}", path.display())))
    }

    /// Parses the contents of a `tokenizer.json`.
    pub fn from_json(json: &str) -> crate::Result<Self> {
        tokenizers::Tokenizer::from_str(json)
            .map(Self::from_inner)
            .map_err(|e| CoreError::Tokenizer(format!("cannot parse tokenizer JSON: {e}")))
    }

    /// Wraps an already built tokenizer. Truncation and padding stored in a
    /// `tokenizer.json` (all-MiniLM's truncates at 128 tokens) are turned off:
    /// chunking and packing must see every token and decide lengths themselves.
    pub fn from_inner(mut inner: tokenizers::Tokenizer) -> Self {
        // with_truncation(None) cannot fail: only a stride >= max_length is rejected
        let _ = inner.with_truncation(None);
        inner.with_padding(None);
        TextTokenizer { inner }
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids of one text (no special tokens added).
    pub fn encode(&self, text: &str) -> crate::Result<Vec<u32>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        // `encode_fast` skips offset tracking, which ids do not need.
        let encoding = self.inner.encode_fast(text, false).map_err(encode_error)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of each text (no special tokens added), in parallel.
    pub fn encode_batch(&self, texts: &[&str]) -> crate::Result<Vec<Vec<u32>>> {
        texts.par_iter().map(|t| self.encode(t)).collect()
    }

    /// Byte spans of the tokens of `text` (no special tokens), one per token
    /// and in the same order as the ids of [`encode`](Self::encode).
    ///
    /// Every span lies on char boundaries, so `&text[start..end]` is valid, and
    /// spans are sorted and non-overlapping. A byte-level BPE token that holds
    /// only part of a multi-byte character is widened to the whole character;
    /// a token whose bytes were all claimed by the token before it gets an
    /// empty span at that token's end (so the count still matches the ids).
    pub fn token_spans(&self, text: &str) -> crate::Result<Vec<(usize, usize)>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        // `encode` reports byte offsets into the original text.
        let encoding = self.inner.encode(text, false).map_err(encode_error)?;
        Ok(char_aligned_spans(text, encoding.get_offsets()))
    }
}

fn encode_error(e: tokenizers::Error) -> CoreError {
    CoreError::Tokenizer(format!("encoding failed: {e}"))
}

/// Snaps raw byte offsets outwards to char boundaries, then makes them sorted
/// and non-overlapping by starting each span no earlier than the previous end.
fn char_aligned_spans(text: &str, offsets: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut spans = Vec::with_capacity(offsets.len());
    let mut prev_end = 0usize;
    for &(start, end) in offsets {
        let start = floor_char_boundary(text, start).max(prev_end);
        let end = ceil_char_boundary(text, end).max(start);
        spans.push((start, end));
        prev_end = end;
    }
    spans
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// A tiny word-level tokenizer for tests of this and other modules: a
/// `Whitespace` pre-tokenizer, `[UNK]` = 0, `<|im_start|>` = 1, `<|im_end|>` = 2.
#[cfg(test)]
pub(crate) fn test_tokenizer() -> TextTokenizer {
    const WORDS: &[&str] = &[
        "user", "assistant", "system", "Hello", "hello", "world", "Hi", "there", ".", "!", "?", ",", "How",
        "are", "you", "I", "am", "fine", "You", "a", "helpful", "bot", "thanks", "What", "is", "2", "+", "4",
    ];
    let mut vocab = String::from(r#""[UNK]": 0, "<|im_start|>": 1, "<|im_end|>": 2"#);
    for (i, w) in WORDS.iter().enumerate() {
        vocab.push_str(&format!(r#", "{w}": {}"#, i + 3));
    }
    let special = |id: u32, content: &str| {
        format!(
            r#"{{"id": {id}, "content": "{content}", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}}"#
        )
    };
    let json = format!(
        r#"{{
  "version": "1.0", "truncation": null, "padding": null,
  "added_tokens": [{}, {}, {}],
  "normalizer": null,
  "pre_tokenizer": {{"type": "Whitespace"}},
  "post_processor": null,
  "decoder": null,
  "model": {{"type": "WordLevel", "vocab": {{{vocab}}}, "unk_token": "[UNK]"}}
}}"#,
        special(0, "[UNK]"),
        special(1, "<|im_start|>"),
        special(2, "<|im_end|>")
    );
    TextTokenizer::from_json(&json).expect("test tokenizer JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tokenize_word_level_ids_and_specials() {
        let tok = test_tokenizer();
        assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
        assert_eq!(tok.token_to_id("Hello"), Some(6));
        assert_eq!(tok.token_to_id("nope"), None);
        let ids = tok.encode("<|im_start|>user\nHello world!<|im_end|>").unwrap();
        let expect: Vec<u32> = ["<|im_start|>", "user", "Hello", "world", "!", "<|im_end|>"]
            .iter()
            .map(|t| tok.token_to_id(t).unwrap())
            .collect();
        assert_eq!(ids, expect);
        assert_eq!(tok.encode("zebra").unwrap(), vec![0]);
        assert!(tok.encode("").unwrap().is_empty());
    }

    #[test]
    fn tokenize_missing_file_is_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.json");
        match TextTokenizer::from_file(&path) {
            Err(CoreError::Io { path: p, .. }) => assert!(p.contains("nope.json")),
            other => panic!("expected Io error, got {:?}", other.err()),
        }
    }

    #[test]
    fn truncation_and_padding_in_the_file_are_ignored() {
        let base = test_tokenizer();
        let mut inner = base.inner().clone();
        inner
            .with_truncation(Some(tokenizers::TruncationParams { max_length: 2, ..Default::default() }))
            .unwrap();
        inner.with_padding(Some(tokenizers::PaddingParams::default()));
        let json = inner.to_string(false).unwrap();
        let tok = TextTokenizer::from_json(&json).unwrap();
        let text = "Hello world Hello world Hello";
        assert_eq!(tok.encode(text).unwrap().len(), 5);
        assert_eq!(tok.encode_batch(&[text, "Hello"]).unwrap()[1].len(), 1);
        assert_eq!(tok.token_spans(text).unwrap().len(), 5);
    }

    #[test]
    fn tokenize_corrupt_file_is_tokenizer_error() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"{ this is not a tokenizer").unwrap();
        match TextTokenizer::from_file(file.path()) {
            Err(CoreError::Tokenizer(msg)) => assert!(msg.contains("cannot load tokenizer.json at"), "{msg}"),
            other => panic!("expected Tokenizer error, got {:?}", other.err()),
        }
        assert!(matches!(TextTokenizer::from_json("[]"), Err(CoreError::Tokenizer(_))));
    }

    #[test]
    fn tokenize_from_file_roundtrip() {
        let tok = test_tokenizer();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(tok.inner().to_string(false).unwrap().as_bytes()).unwrap();
        let loaded = TextTokenizer::from_file(file.path()).unwrap();
        assert_eq!(loaded.encode("Hello there").unwrap(), tok.encode("Hello there").unwrap());
    }

    #[test]
    fn tokenize_batch_equals_single() {
        let tok = test_tokenizer();
        let texts: Vec<String> = (0..200).map(|i| format!("Hello world {i}, how are you? I am fine.")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let batch = tok.encode_batch(&refs).unwrap();
        assert_eq!(batch.len(), refs.len());
        for (t, ids) in refs.iter().zip(&batch) {
            assert_eq!(&tok.encode(t).unwrap(), ids);
        }
    }

    #[test]
    fn tokenize_spans_reproduce_tokens() {
        let tok = test_tokenizer();
        let text = "  Hello,  wörld! <|im_end|>are you\tfine?";
        let spans = tok.token_spans(text).unwrap();
        let pieces: Vec<&str> = spans.iter().map(|&(s, e)| &text[s..e]).collect();
        assert_eq!(pieces, ["Hello", ",", "wörld", "!", "<|im_end|>", "are", "you", "fine", "?"]);
        assert_eq!(spans.len(), tok.encode(text).unwrap().len());
    }

    /// A byte-level BPE without merges splits "é" (2 bytes) and "😀" (4 bytes)
    /// into one token per byte; the spans must still be valid char slices.
    #[test]
    fn tokenize_byte_level_spans_on_char_boundaries() {
        use tokenizers::models::bpe::BPE;
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        let vocab: tokenizers::models::bpe::Vocab =
            ByteLevel::alphabet().into_iter().enumerate().map(|(i, c)| (c.to_string(), i as u32)).collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, vec![]).build().unwrap();
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
        let tok = TextTokenizer::from_inner(inner);

        let text = "aé b😀c";
        let spans = tok.token_spans(text).unwrap();
        assert_eq!(spans.len(), text.len(), "one token per byte");
        let mut prev_end = 0;
        for &(s, e) in &spans {
            assert!(s >= prev_end && s <= e && e <= text.len());
            assert!(text.is_char_boundary(s) && text.is_char_boundary(e));
            prev_end = e;
        }
        let joined: String = spans.iter().map(|&(s, e)| &text[s..e]).collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn tokenize_char_aligned_spans_clamps() {
        let text = "é😀"; // bytes 0..2 and 2..6
        let spans = char_aligned_spans(text, &[(0, 1), (1, 2), (2, 3), (3, 6), (9, 12)]);
        assert_eq!(spans, vec![(0, 2), (2, 2), (2, 6), (6, 6), (6, 6)]);
    }
}
