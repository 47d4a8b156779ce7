//! Chunking: passages within a token budget, with overlap, cut preferably at
//! paragraph then sentence boundaries, as byte offsets into the source text.
//!
//! The text is first cut into units: paragraphs (separated by a blank line)
//! and, inside them, sentences (after `.`, `!` or `?`, optionally followed by
//! closing quotes or brackets, then whitespace) and lines (a single newline is
//! a soft boundary). A token belongs to the unit its start lies in, so each
//! boundary becomes a cut between two token indices. Chunks are then built
//! greedily over token indices: a chunk ends at the furthest cut that keeps it
//! within `max_tokens`, unless it is at least half full at a paragraph end and
//! the next paragraph would not fit; a unit larger than the budget on its own
//! is split between tokens. The next chunk starts with the trailing units of
//! the previous one that fit in `overlap_tokens` (trailing tokens after a
//! split inside a unit).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkOptions {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// Fallback tokens when no tokenizer is given: runs of word characters and
/// single other non-space characters, as byte spans.
pub fn word_token_spans(text: &str) -> Vec<(usize, usize)> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut spans = Vec::new();
    let mut run_start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if is_word(c) {
            run_start.get_or_insert(i);
            continue;
        }
        if let Some(s) = run_start.take() {
            spans.push((s, i));
        }
        if !c.is_whitespace() {
            spans.push((i, i + c.len_utf8()));
        }
    }
    if let Some(s) = run_start {
        spans.push((s, text.len()));
    }
    spans
}

/// Splits `text` into chunks of at most `max_tokens` tokens (`tokens` are the
/// byte spans of its tokens, sorted). Consecutive chunks share about
/// `overlap_tokens` tokens.
///
/// Each chunk runs from the start of its first token to the end of its last
/// token, with surrounding whitespace trimmed (tokenizers that fold spaces
/// into tokens would otherwise leave it there); chunks are sorted by start
/// and every token lies in at least one chunk. Empty `tokens` give no chunks.
pub fn chunk_text(text: &str, tokens: &[(usize, usize)], opts: ChunkOptions) -> crate::Result<Vec<Span>> {
    validate(text, tokens, opts)?;
    if tokens.is_empty() {
        return Ok(Vec::new());
    }
    let cuts = Cuts::new(&boundaries(text), tokens);
    let ranges = chunk_token_ranges(&cuts, tokens.len(), opts);
    Ok(ranges.into_iter().filter_map(|(s, e)| trimmed_span(text, tokens[s].0, tokens[e - 1].1)).collect())
}

fn validate(text: &str, tokens: &[(usize, usize)], opts: ChunkOptions) -> crate::Result<()> {
    if opts.max_tokens == 0 {
        return Err(crate::CoreError::invalid("max_tokens must be at least 1, got 0"));
    }
    if opts.overlap_tokens >= opts.max_tokens {
        return Err(crate::CoreError::invalid(format!(
            "overlap_tokens must be smaller than max_tokens ({}), got {}",
            opts.max_tokens, opts.overlap_tokens
        )));
    }
    let mut prev_end = 0usize;
    for (i, &(start, end)) in tokens.iter().enumerate() {
        if start > end || end > text.len() || start < prev_end {
            return Err(crate::CoreError::invalid(format!(
                "token spans must be sorted, non-overlapping and within the text ({} bytes); token {i} is ({start}, {end}) after a token ending at {prev_end}",
                text.len()
            )));
        }
        if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            return Err(crate::CoreError::invalid(format!(
                "token spans must lie on UTF-8 character boundaries; token {i} is ({start}, {end})"
            )));
        }
        prev_end = end;
    }
    Ok(())
}

/// How strongly a position separates the text before it from the text after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    /// Sentence end or single line break.
    Sentence,
    /// Blank line (or end of text).
    Paragraph,
}

/// Byte positions where a unit ends, sorted (a position may repeat).
fn boundaries(text: &str) -> Vec<(usize, Strength)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\n' => {
                // A run of whitespace holding two or more line breaks is a blank line.
                let mut newlines = 1;
                while let Some(&(_, w)) = chars.peek() {
                    if !w.is_whitespace() {
                        break;
                    }
                    newlines += usize::from(w == '\n');
                    chars.next();
                }
                out.push((i, if newlines >= 2 { Strength::Paragraph } else { Strength::Sentence }));
            }
            '.' | '!' | '?' => {
                // "...", "?!" and closing quotes or brackets stay with the sentence.
                let mut end = i + 1;
                while let Some(&(j, w)) = chars.peek() {
                    if !matches!(w, '.' | '!' | '?' | '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '»') {
                        break;
                    }
                    end = j + w.len_utf8();
                    chars.next();
                }
                if end < bytes.len() && text[end..].starts_with(char::is_whitespace) {
                    out.push((end, Strength::Sentence));
                }
            }
            _ => {}
        }
    }
    out
}

/// Cuts between tokens: cut `t` separates token `t - 1` from token `t`.
/// `all` holds every cut (sentence or paragraph), `paragraphs` only paragraph
/// cuts; both are sorted, lie in `1..=n` and include `n` (the end of text).
struct Cuts {
    all: Vec<usize>,
    paragraphs: Vec<usize>,
}

impl Cuts {
    fn new(boundaries: &[(usize, Strength)], tokens: &[(usize, usize)]) -> Self {
        let n = tokens.len();
        let mut all: Vec<usize> = Vec::new();
        let mut paragraphs: Vec<usize> = Vec::new();
        let mut t = 0usize; // tokens starting before the current boundary
        for &(pos, strength) in boundaries {
            while t < n && tokens[t].0 < pos {
                t += 1;
            }
            if t == 0 || t == n {
                continue; // no token before it, or nothing after: not a cut
            }
            if all.last() != Some(&t) {
                all.push(t);
            }
            if strength == Strength::Paragraph && paragraphs.last() != Some(&t) {
                paragraphs.push(t);
            }
        }
        all.push(n);
        paragraphs.push(n);
        Cuts { all, paragraphs }
    }

    /// The largest cut in `(lo, hi]`, if any.
    fn last_in(cuts: &[usize], lo: usize, hi: usize) -> Option<usize> {
        let i = cuts.partition_point(|&c| c <= hi);
        (i > 0 && cuts[i - 1] > lo).then(|| cuts[i - 1])
    }

    /// The smallest cut in `[lo, hi]`, if any.
    fn first_in(cuts: &[usize], lo: usize, hi: usize) -> Option<usize> {
        let i = cuts.partition_point(|&c| c < lo);
        cuts.get(i).copied().filter(|&c| c <= hi)
    }
}

/// Greedy chunking over token indices; returns half-open token ranges.
fn chunk_token_ranges(cuts: &Cuts, n: usize, opts: ChunkOptions) -> Vec<(usize, usize)> {
    let (max, overlap) = (opts.max_tokens, opts.overlap_tokens);
    let mut ranges = Vec::new();
    let mut start = 0usize;
    let mut prev_end = 0usize;
    loop {
        let end = chunk_end(cuts, start, prev_end, max, n);
        ranges.push((start, end));
        if end >= n {
            return ranges;
        }
        start = next_start(cuts, start, end, overlap);
        prev_end = end;
    }
}

/// Where the chunk starting at `start` ends: always after `prev_end` (the end
/// of the previous chunk) so that every chunk makes progress.
fn chunk_end(cuts: &Cuts, start: usize, prev_end: usize, max: usize, n: usize) -> usize {
    let limit = (start + max).min(n);
    let Some(sentence) = Cuts::last_in(&cuts.all, prev_end, limit) else {
        // The unit at hand is larger than the budget on its own: split between tokens.
        return limit;
    };
    // A paragraph end that leaves the chunk at least half full beats a later
    // sentence end: the paragraph after it does not fit in this chunk anyway.
    match Cuts::last_in(&cuts.paragraphs, prev_end, limit) {
        Some(para) if para < sentence && 2 * (para - start) >= max => para,
        _ => sentence,
    }
}

/// Where the chunk after `[start, end)` starts: at the earliest unit boundary
/// that keeps at most `overlap` tokens of the previous chunk, or `overlap`
/// tokens back when `end` split a unit. Always after `start`, at most `end`.
fn next_start(cuts: &Cuts, start: usize, end: usize, overlap: usize) -> usize {
    let earliest = end.saturating_sub(overlap).max(start + 1);
    let ended_at_cut = cuts.all.binary_search(&end).is_ok();
    if ended_at_cut {
        Cuts::first_in(&cuts.all, earliest, end).unwrap_or(end)
    } else {
        earliest
    }
}

/// The byte span `[start, end)` without leading and trailing whitespace;
/// `None` when nothing but whitespace is left.
fn trimmed_span(text: &str, start: usize, end: usize) -> Option<Span> {
    let slice = &text[start..end];
    let lead = slice.len() - slice.trim_start().len();
    let trimmed = slice.trim();
    (!trimmed.is_empty()).then(|| Span { start: start + lead, end: start + lead + trimmed.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(max_tokens: usize, overlap_tokens: usize) -> ChunkOptions {
        ChunkOptions { max_tokens, overlap_tokens }
    }

    fn chunk_words(text: &str, o: ChunkOptions) -> (Vec<(usize, usize)>, Vec<Span>) {
        let tokens = word_token_spans(text);
        let chunks = chunk_text(text, &tokens, o).unwrap();
        check_invariants(text, &tokens, &chunks, o);
        (tokens, chunks)
    }

    /// Indices of the tokens inside a chunk.
    fn tokens_in(tokens: &[(usize, usize)], c: &Span) -> Vec<usize> {
        (0..tokens.len()).filter(|&i| tokens[i].0 >= c.start && tokens[i].1 <= c.end).collect()
    }

    fn check_invariants(text: &str, tokens: &[(usize, usize)], chunks: &[Span], o: ChunkOptions) {
        let mut covered = vec![false; tokens.len()];
        for (k, c) in chunks.iter().enumerate() {
            assert!(c.start < c.end && c.end <= text.len());
            assert!(text.get(c.start..c.end).is_some(), "span {c:?} not on char boundaries");
            if k > 0 {
                assert!(chunks[k - 1].start < c.start && chunks[k - 1].end < c.end, "sorted, progressing");
            }
            let inside = tokens_in(tokens, c);
            assert!(inside.len() <= o.max_tokens, "chunk {k} holds {} tokens", inside.len());
            for i in inside {
                covered[i] = true;
            }
        }
        assert!(covered.iter().all(|&c| c), "every token covered");
    }

    #[test]
    fn chunk_word_token_spans() {
        let text = "Héllo, wörld_1 —  x!";
        let pieces: Vec<&str> = word_token_spans(text).iter().map(|&(s, e)| &text[s..e]).collect();
        assert_eq!(pieces, ["Héllo", ",", "wörld_1", "—", "x", "!"]);
        assert!(word_token_spans("  \n ").is_empty());
        assert!(word_token_spans("").is_empty());
    }

    #[test]
    fn chunk_short_text_is_one_chunk() {
        let text = "  A short text. Two sentences!\n";
        let (_, chunks) = chunk_words(text, opts(100, 10));
        assert_eq!(chunks, vec![Span { start: 2, end: 30 }]);
        assert_eq!(&text[2..30], "A short text. Two sentences!");
    }

    #[test]
    fn chunk_no_tokens_no_chunks() {
        assert!(chunk_text("", &[], opts(10, 0)).unwrap().is_empty());
        assert!(chunk_text("   \n\n ", &[], opts(10, 0)).unwrap().is_empty());
    }

    #[test]
    fn chunk_splits_at_sentence_boundaries() {
        let text: String = (0..40).map(|i| format!("Sentence number {i} has a few words in it. ")).collect();
        let (_, chunks) = chunk_words(&text, opts(50, 0));
        assert!(chunks.len() > 5);
        for c in &chunks {
            assert!(text[c.start..c.end].ends_with('.'), "{:?}", &text[c.start..c.end]);
            assert!(text[c.start..c.end].starts_with("Sentence"));
        }
    }

    #[test]
    fn chunk_prefers_paragraph_boundaries() {
        // Paragraphs of 3 sentences × 6 tokens = 18 tokens; a budget of 30 fits
        // one paragraph and part of the next, so chunks should end at paragraph ends.
        let para = "One two three four five. Six seven eight nine ten. Eleven twelve thirteen fourteen fifteen.";
        let text = [para; 6].join("\n \n");
        let (_, chunks) = chunk_words(&text, opts(30, 0));
        assert_eq!(chunks.len(), 6);
        for c in &chunks {
            assert_eq!(&text[c.start..c.end], para);
        }
    }

    #[test]
    fn chunk_overlap_present_and_bounded() {
        let text: String = (0..60).map(|i| format!("This is sentence {i}. ")).collect();
        let o = opts(25, 6);
        let (tokens, chunks) = chunk_words(&text, o);
        assert!(chunks.len() > 3);
        for w in chunks.windows(2) {
            let a = tokens_in(&tokens, &w[0]);
            let b = tokens_in(&tokens, &w[1]);
            let shared = a.iter().filter(|i| b.contains(i)).count();
            assert!(shared > 0 && shared <= o.overlap_tokens, "shared {shared}");
            assert!(text[w[1].start..w[1].end].starts_with("This"), "overlap starts at a sentence");
        }
    }

    #[test]
    fn chunk_giant_sentence_splits_at_tokens() {
        let text: String = (0..10_000).map(|i| format!("w{i} ")).collect();
        let o = opts(128, 16);
        let (tokens, chunks) = chunk_words(&text, o);
        assert!(chunks.len() >= 10_000 / (128 - 16));
        for w in chunks.windows(2) {
            let a = tokens_in(&tokens, &w[0]);
            let b = tokens_in(&tokens, &w[1]);
            let shared = a.iter().filter(|i| b.contains(i)).count();
            assert_eq!(shared, 16);
        }
        for c in &chunks[..chunks.len() - 1] {
            assert_eq!(tokens_in(&tokens, c).len(), 128);
        }
    }

    #[test]
    fn chunk_unicode_spans_valid() {
        let text: String = (0..300).map(|i| format!("Ünïcödé 😀 {i} «quoted»! Наступне речення… ")).collect();
        for o in [opts(7, 3), opts(40, 10), opts(1, 0)] {
            chunk_words(&text, o);
        }
    }

    #[test]
    fn chunk_max_one_token() {
        let text = "a b. c\n\nd";
        let (tokens, chunks) = chunk_words(text, opts(1, 0));
        assert_eq!(chunks.len(), tokens.len());
    }

    #[test]
    fn chunk_whitespace_in_tokens_trimmed() {
        // Tokens that carry their leading space, as byte-level BPE does.
        let text = "Alpha beta. Gamma delta.\n\nEpsilon.";
        let tokens = vec![(0, 5), (5, 10), (10, 11), (11, 17), (17, 23), (23, 24), (24, 26), (26, 33), (33, 34)];
        let chunks = chunk_text(text, &tokens, opts(4, 0)).unwrap();
        let pieces: Vec<&str> = chunks.iter().map(|c| &text[c.start..c.end]).collect();
        assert_eq!(pieces, ["Alpha beta.", "Gamma delta.", "Epsilon."]);
    }

    #[test]
    fn chunk_errors() {
        let text = "héllo world";
        let tokens = word_token_spans(text);
        assert!(chunk_text(text, &tokens, opts(0, 0)).is_err());
        assert!(chunk_text(text, &tokens, opts(5, 5)).is_err());
        assert!(chunk_text(text, &[(0, 100)], opts(5, 0)).is_err());
        assert!(chunk_text(text, &[(3, 5), (0, 2)], opts(5, 0)).is_err());
        assert!(chunk_text(text, &[(0, 4), (2, 6)], opts(5, 0)).is_err());
        assert!(chunk_text(text, &[(2, 4)], opts(5, 0)).is_err(), "inside 'é'");
        assert!(chunk_text(text, &[(5, 3)], opts(5, 0)).is_err());
    }
}
