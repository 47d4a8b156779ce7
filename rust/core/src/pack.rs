//! Chat-formatted SFT examples (prompt tokens masked) and best-fit-decreasing packing.
//!
//! An example is rendered as `bos` then, per message, `prefix + content +
//! suffix` of its role. Each piece is tokenized on its own and the ids are
//! concatenated, so a piece boundary is always a token boundary; the fixed
//! strings of the format are tokenized once per call. Only assistant content
//! and the assistant suffix (the end-of-turn marker the model must learn to
//! emit) carry labels.
//!
//! Packing places whole examples into `seq_len` rows, longest first, each into
//! the open row it fills best; position ids restart at every example so the
//! trainer can build per-example attention from them.

use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::tokenize::TextTokenizer;
use crate::CoreError;

pub const IGNORE_INDEX: i32 = -100;

/// The literal text around each message, taken from a model's chat template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatFormat {
    /// Text once at the start of every conversation (e.g. a BOS token).
    pub bos: String,
    pub system_prefix: String,
    pub system_suffix: String,
    pub user_prefix: String,
    pub user_suffix: String,
    pub assistant_prefix: String,
    pub assistant_suffix: String,
    /// Added as the first message when a conversation has no system message.
    pub default_system: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SftExample {
    pub input_ids: Vec<u32>,
    /// `IGNORE_INDEX` on every token that is not assistant content or the assistant suffix.
    pub labels: Vec<i32>,
}

impl SftExample {
    /// Appends `ids`, labelled with themselves when `learn`, masked otherwise.
    fn push(&mut self, ids: &[u32], learn: bool) {
        self.input_ids.extend_from_slice(ids);
        if learn {
            self.labels.extend(ids.iter().map(|&id| id as i32));
        } else {
            self.labels.resize(self.labels.len() + ids.len(), IGNORE_INDEX);
        }
    }
}

/// The token ids of the fixed strings of a [`ChatFormat`], computed once per call.
struct EncodedFormat {
    bos: Vec<u32>,
    /// `(prefix, suffix)` for system, user, assistant.
    system: (Vec<u32>, Vec<u32>),
    user: (Vec<u32>, Vec<u32>),
    assistant: (Vec<u32>, Vec<u32>),
    default_system: Option<Vec<u32>>,
}

impl EncodedFormat {
    fn new(tokenizer: &TextTokenizer, format: &ChatFormat) -> crate::Result<Self> {
        let pair = |p: &str, s: &str| -> crate::Result<(Vec<u32>, Vec<u32>)> {
            Ok((tokenizer.encode(p)?, tokenizer.encode(s)?))
        };
        Ok(EncodedFormat {
            bos: tokenizer.encode(&format.bos)?,
            system: pair(&format.system_prefix, &format.system_suffix)?,
            user: pair(&format.user_prefix, &format.user_suffix)?,
            assistant: pair(&format.assistant_prefix, &format.assistant_suffix)?,
            default_system: format.default_system.as_deref().map(|s| tokenizer.encode(s)).transpose()?,
        })
    }

    fn affixes(&self, role: Role) -> &(Vec<u32>, Vec<u32>) {
        match role {
            Role::System => &self.system,
            Role::User => &self.user,
            Role::Assistant => &self.assistant,
        }
    }
}

/// Renders and tokenizes conversations in parallel.
///
/// Errors when a conversation has no assistant message or an assistant
/// message with empty content (naming the first such conversation).
pub fn build_examples(tokenizer: &TextTokenizer, format: &ChatFormat, conversations: &[Vec<Message>]) -> crate::Result<Vec<SftExample>> {
    // Validate up front, in order, so the error names the first bad conversation.
    for (i, conv) in conversations.iter().enumerate() {
        validate_conversation(i, conv)?;
    }
    let encoded = EncodedFormat::new(tokenizer, format)?;
    conversations.par_iter().map(|conv| build_one(tokenizer, &encoded, conv)).collect()
}

fn validate_conversation(index: usize, conv: &[Message]) -> crate::Result<()> {
    let mut has_assistant = false;
    for (j, m) in conv.iter().enumerate() {
        if m.role == Role::Assistant {
            if m.content.is_empty() {
                return Err(CoreError::invalid(format!(
                    "conversation {index}: assistant message {j} has empty content; assistant messages must have text to learn"
                )));
            }
            has_assistant = true;
        }
    }
    if !has_assistant {
        return Err(CoreError::invalid(format!(
            "conversation {index} has no assistant message; every conversation needs at least one"
        )));
    }
    Ok(())
}

fn build_one(tokenizer: &TextTokenizer, enc: &EncodedFormat, conv: &[Message]) -> crate::Result<SftExample> {
    let mut ex = SftExample::default();
    ex.push(&enc.bos, false);
    if !conv.iter().any(|m| m.role == Role::System) {
        if let Some(system) = &enc.default_system {
            ex.push(&enc.system.0, false);
            ex.push(system, false);
            ex.push(&enc.system.1, false);
        }
    }
    for m in conv {
        let (prefix, suffix) = enc.affixes(m.role);
        let learn = m.role == Role::Assistant;
        ex.push(prefix, false);
        ex.push(&tokenizer.encode(&m.content)?, learn);
        ex.push(suffix, learn);
    }
    Ok(ex)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverLong {
    /// Keep the first `seq_len` tokens.
    Truncate,
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackOptions {
    pub seq_len: usize,
    pub pad_id: u32,
    pub overlong: OverLong,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Packed {
    pub seq_len: usize,
    pub num_sequences: usize,
    /// Row-major `num_sequences × seq_len`; padding is `pad_id`.
    pub input_ids: Vec<u32>,
    /// `IGNORE_INDEX` on masked and padding positions.
    pub labels: Vec<i32>,
    /// Restart at 0 for every example; padding positions count on from 0 too.
    pub position_ids: Vec<u32>,
    /// Per sequence, the example indices it holds, in placement order.
    pub example_indices: Vec<Vec<usize>>,
    /// Per sequence, the token lengths of those examples (same order).
    pub example_lengths: Vec<Vec<usize>>,
    /// Real tokens / (num_sequences × seq_len).
    pub efficiency: f64,
    pub truncated: usize,
    pub dropped: usize,
}

/// The largest `seq_len` accepted (about a million tokens per row).
pub const MAX_SEQ_LEN: usize = 1 << 20;

/// Packs examples into `seq_len` sequences with best-fit decreasing.
///
/// Examples longer than `seq_len` are truncated or dropped per `overlong`;
/// empty examples are dropped. No example is split across sequences.
pub fn pack_examples(examples: &[SftExample], opts: PackOptions) -> crate::Result<Packed> {
    if opts.seq_len == 0 || opts.seq_len > MAX_SEQ_LEN {
        return Err(CoreError::invalid(format!(
            "seq_len must be between 1 and {MAX_SEQ_LEN}, got {}",
            opts.seq_len
        )));
    }
    for (i, ex) in examples.iter().enumerate() {
        if ex.input_ids.len() != ex.labels.len() {
            return Err(CoreError::invalid(format!(
                "example {i} has {} input ids but {} labels; they must have the same length",
                ex.input_ids.len(),
                ex.labels.len()
            )));
        }
    }
    let (items, truncated, dropped) = select_items(examples, opts);
    let bins = best_fit_decreasing(items, opts.seq_len);
    let mut packed = materialize(examples, &bins, opts);
    packed.truncated = truncated;
    packed.dropped = dropped;
    Ok(packed)
}

/// `(example index, packed length)` of the examples kept, and the truncated
/// and dropped counts.
fn select_items(examples: &[SftExample], opts: PackOptions) -> (Vec<(usize, usize)>, usize, usize) {
    let (mut truncated, mut dropped) = (0, 0);
    let mut items = Vec::with_capacity(examples.len());
    for (i, ex) in examples.iter().enumerate() {
        let len = ex.input_ids.len();
        if len == 0 {
            dropped += 1;
        } else if len <= opts.seq_len {
            items.push((i, len));
        } else if opts.overlong == OverLong::Truncate {
            truncated += 1;
            items.push((i, opts.seq_len));
        } else {
            dropped += 1;
        }
    }
    (items, truncated, dropped)
}

/// Bins of `(example index, length)` in placement order. Items go longest
/// first (ties by index) into the open bin with the least room that still
/// fits, found in O(log n) through a map from free room to bins.
fn best_fit_decreasing(mut items: Vec<(usize, usize)>, seq_len: usize) -> Vec<Vec<(usize, usize)>> {
    items.sort_by_key(|&(i, len)| (Reverse(len), i));
    let mut bins: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut by_room: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, len) in items {
        let fit = by_room.range_mut(len..).next().map(|(&room, ids)| (room, ids.pop()));
        let (bin, room) = match fit {
            Some((room, Some(bin))) => {
                if by_room.get(&room).is_some_and(Vec::is_empty) {
                    by_room.remove(&room);
                }
                (bin, room)
            }
            _ => {
                bins.push(Vec::new());
                (bins.len() - 1, seq_len)
            }
        };
        bins[bin].push((i, len));
        if room > len {
            by_room.entry(room - len).or_default().push(bin);
        }
    }
    bins
}

/// Writes the bins into row-major arrays, rows in parallel.
fn materialize(examples: &[SftExample], bins: &[Vec<(usize, usize)>], opts: PackOptions) -> Packed {
    let seq_len = opts.seq_len;
    let rows = bins.len();
    // Zeroed allocations are lazy (calloc); the rows then write every
    // element once, in parallel, which is much faster than a serial fill.
    let mut input_ids = vec![0u32; rows * seq_len];
    let mut labels = vec![0i32; rows * seq_len];
    let mut position_ids = vec![0u32; rows * seq_len];
    input_ids
        .par_chunks_mut(seq_len)
        .zip(labels.par_chunks_mut(seq_len))
        .zip(position_ids.par_chunks_mut(seq_len))
        .zip(bins.par_iter())
        .for_each(|(((ids, labs), pos), bin)| fill_row(examples, bin, opts.pad_id, ids, labs, pos));
    let real: usize = bins.iter().flatten().map(|&(_, len)| len).sum();
    let efficiency = if rows == 0 { 0.0 } else { real as f64 / (rows * seq_len) as f64 };
    Packed {
        seq_len,
        num_sequences: rows,
        input_ids,
        labels,
        position_ids,
        example_indices: bins.iter().map(|b| b.iter().map(|&(i, _)| i).collect()).collect(),
        example_lengths: bins.iter().map(|b| b.iter().map(|&(_, len)| len).collect()).collect(),
        efficiency,
        truncated: 0,
        dropped: 0,
    }
}

/// One row: the examples of `bin` back to back, then padding (`pad_id`,
/// `IGNORE_INDEX`) whose position ids also count from 0.
fn fill_row(examples: &[SftExample], bin: &[(usize, usize)], pad_id: u32, ids: &mut [u32], labs: &mut [i32], pos: &mut [u32]) {
    let mut at = 0;
    for &(i, len) in bin {
        let ex = &examples[i];
        ids[at..at + len].copy_from_slice(&ex.input_ids[..len]);
        labs[at..at + len].copy_from_slice(&ex.labels[..len]);
        count_from_zero(&mut pos[at..at + len]);
        at += len;
    }
    ids[at..].fill(pad_id);
    labs[at..].fill(IGNORE_INDEX);
    count_from_zero(&mut pos[at..]);
}

fn count_from_zero(pos: &mut [u32]) {
    for (p, k) in pos.iter_mut().zip(0u32..) {
        *p = k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::test_tokenizer;

    fn chatml() -> ChatFormat {
        ChatFormat {
            bos: String::new(),
            system_prefix: "<|im_start|>system\n".into(),
            system_suffix: "<|im_end|>\n".into(),
            user_prefix: "<|im_start|>user\n".into(),
            user_suffix: "<|im_end|>\n".into(),
            assistant_prefix: "<|im_start|>assistant\n".into(),
            assistant_suffix: "<|im_end|>\n".into(),
            default_system: Some("You are a helpful bot.".into()),
        }
    }

    fn msg(role: Role, content: &str) -> Message {
        Message { role, content: content.into() }
    }

    fn example(len: usize, seed: u32) -> SftExample {
        SftExample {
            input_ids: (0..len as u32).map(|k| seed * 10_000 + k).collect(),
            labels: (0..len as i32).map(|k| if k % 2 == 0 { k } else { IGNORE_INDEX }).collect(),
        }
    }

    fn opts(seq_len: usize, overlong: OverLong) -> PackOptions {
        PackOptions { seq_len, pad_id: 7, overlong }
    }

    /// Deterministic pseudo-random numbers (xorshift), so tests need no extra crate.
    fn lengths(n: usize, lo: usize, hi: usize) -> Vec<usize> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                lo + (x % (hi - lo + 1) as u64) as usize
            })
            .collect()
    }

    #[test]
    fn pack_build_masks_prompt_tokens() {
        let tok = test_tokenizer();
        let conv = vec![msg(Role::User, "Hello there!"), msg(Role::Assistant, "Hi, how are you?")];
        let ex = build_examples(&tok, &chatml(), &[conv]).unwrap().pop().unwrap();

        // Manual rendering: the prompt part masked, the answer and its suffix learned.
        let prompt = "<|im_start|>system\nYou are a helpful bot.<|im_end|>\n<|im_start|>user\nHello there!<|im_end|>\n<|im_start|>assistant\n";
        let answer = "Hi, how are you?<|im_end|>\n";
        let prompt_ids = tok.encode(prompt).unwrap();
        let answer_ids = tok.encode(answer).unwrap();
        assert_eq!(ex.input_ids, [prompt_ids.clone(), answer_ids.clone()].concat());
        let mut expect = vec![IGNORE_INDEX; prompt_ids.len()];
        expect.extend(answer_ids.iter().map(|&id| id as i32));
        assert_eq!(ex.labels, expect);
        assert_eq!(ex.input_ids[0], 1, "<|im_start|> became its special id");
        assert_eq!(*ex.input_ids.last().unwrap(), 2, "<|im_end|> learned at the end");
    }

    #[test]
    fn pack_build_multi_turn_and_own_system() {
        let tok = test_tokenizer();
        let mut format = chatml();
        format.bos = "<|im_end|>".into(); // any special token will do as a BOS here
        let conv = vec![
            msg(Role::System, "You are a bot."),
            msg(Role::User, "Hi"),
            msg(Role::Assistant, "Hello"),
            msg(Role::User, "How are you?"),
            msg(Role::Assistant, "I am fine."),
        ];
        let ex = build_examples(&tok, &format, std::slice::from_ref(&conv)).unwrap().pop().unwrap();
        let mut text = String::from("<|im_end|>");
        let mut learned = Vec::new();
        for m in &conv {
            let (p, s) = match m.role {
                Role::System => (&format.system_prefix, &format.system_suffix),
                Role::User => (&format.user_prefix, &format.user_suffix),
                Role::Assistant => (&format.assistant_prefix, &format.assistant_suffix),
            };
            text.push_str(p);
            if m.role == Role::Assistant {
                learned.extend(tok.encode(&format!("{}{s}", m.content)).unwrap());
            }
            text.push_str(&m.content);
            text.push_str(s);
        }
        assert_eq!(ex.input_ids, tok.encode(&text).unwrap(), "own system message, no default added");
        let got: Vec<u32> = ex.labels.iter().filter(|&&l| l != IGNORE_INDEX).map(|&l| l as u32).collect();
        assert_eq!(got, learned);
    }

    #[test]
    fn pack_build_errors_name_conversation() {
        let tok = test_tokenizer();
        let good = vec![msg(Role::User, "Hi"), msg(Role::Assistant, "Hello")];
        let no_answer = vec![msg(Role::User, "Hi")];
        let empty_answer = vec![msg(Role::User, "Hi"), msg(Role::Assistant, "")];
        let err = build_examples(&tok, &chatml(), &[good.clone(), no_answer]).unwrap_err().to_string();
        assert!(err.contains("conversation 1"), "{err}");
        let err = build_examples(&tok, &chatml(), &[good.clone(), good, empty_answer]).unwrap_err().to_string();
        assert!(err.contains("conversation 2"), "{err}");
        assert!(build_examples(&tok, &chatml(), &[vec![]]).is_err());
        assert!(build_examples(&tok, &chatml(), &[]).unwrap().is_empty());
    }

    #[test]
    fn pack_efficiency_on_random_lengths() {
        let examples: Vec<SftExample> =
            lengths(5000, 20, 400).into_iter().enumerate().map(|(i, l)| example(l, i as u32)).collect();
        let packed = pack_examples(&examples, opts(2048, OverLong::Truncate)).unwrap();
        assert!(packed.efficiency >= 0.95, "efficiency {}", packed.efficiency);
        assert_eq!(packed.input_ids.len(), packed.num_sequences * 2048);
        assert_eq!(packed.labels.len(), packed.input_ids.len());
        assert_eq!(packed.position_ids.len(), packed.input_ids.len());
    }

    #[test]
    fn pack_no_example_split_or_lost() {
        let examples: Vec<SftExample> =
            lengths(3000, 1, 300).into_iter().enumerate().map(|(i, l)| example(l, i as u32)).collect();
        let seq_len = 512;
        let packed = pack_examples(&examples, opts(seq_len, OverLong::Drop)).unwrap();
        let mut seen = vec![0usize; examples.len()];
        for (row, (idx, lens)) in packed.example_indices.iter().zip(&packed.example_lengths).enumerate() {
            let base = row * seq_len;
            let mut at = 0;
            for (&i, &len) in idx.iter().zip(lens) {
                seen[i] += 1;
                assert_eq!(len, examples[i].input_ids.len());
                assert_eq!(&packed.input_ids[base + at..base + at + len], &examples[i].input_ids[..]);
                assert_eq!(&packed.labels[base + at..base + at + len], &examples[i].labels[..]);
                at += len;
            }
            assert!(at <= seq_len);
            assert!(packed.input_ids[base + at..base + seq_len].iter().all(|&t| t == 7));
            assert!(packed.labels[base + at..base + seq_len].iter().all(|&l| l == IGNORE_INDEX));
        }
        assert!(seen.iter().all(|&s| s == 1));
    }

    #[test]
    fn pack_truncate_vs_drop() {
        let examples = vec![example(5, 0), example(12, 1), example(0, 2), example(10, 3), example(11, 4)];
        let t = pack_examples(&examples, opts(10, OverLong::Truncate)).unwrap();
        assert_eq!((t.truncated, t.dropped), (2, 1));
        let kept: usize = t.example_lengths.iter().flatten().sum();
        assert_eq!(kept, 5 + 10 + 10 + 10);
        // Truncation keeps the first tokens.
        let row = t.example_indices.iter().position(|r| r.contains(&1)).unwrap();
        assert_eq!(&t.input_ids[row * 10..row * 10 + 10], &examples[1].input_ids[..10]);

        let d = pack_examples(&examples, opts(10, OverLong::Drop)).unwrap();
        assert_eq!((d.truncated, d.dropped), (0, 3));
        let mut kept: Vec<usize> = d.example_indices.iter().flatten().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![0, 3]);
    }

    #[test]
    fn pack_best_fit_and_position_ids() {
        // Best fit decreasing on lengths 6, 5, 4, 3, 2 with seq_len 8:
        // 6 → row 0 (room 2); 5 → row 1 (room 3); 4 → row 2 (room 4);
        // 3 → row 1 (exact fit); 2 → row 0 (exact fit).
        let examples: Vec<SftExample> = [3, 6, 2, 5, 4].iter().enumerate().map(|(i, &l)| example(l, i as u32)).collect();
        let p = pack_examples(&examples, opts(8, OverLong::Drop)).unwrap();
        assert_eq!(p.example_indices, vec![vec![1, 2], vec![3, 0], vec![4]]);
        assert_eq!(p.example_lengths, vec![vec![6, 2], vec![5, 3], vec![4]]);
        assert_eq!(&p.position_ids[..8], &[0, 1, 2, 3, 4, 5, 0, 1]);
        assert_eq!(&p.position_ids[8..16], &[0, 1, 2, 3, 4, 0, 1, 2]);
        assert_eq!(&p.position_ids[16..], &[0, 1, 2, 3, 0, 1, 2, 3], "padding counts from 0");
        assert_eq!(&p.input_ids[20..], &[7, 7, 7, 7]);
        assert!((p.efficiency - 20.0 / 24.0).abs() < 1e-12);
    }

    #[test]
    fn pack_empty_and_invalid() {
        let p = pack_examples(&[], opts(16, OverLong::Drop)).unwrap();
        assert_eq!(p.num_sequences, 0);
        assert!(p.input_ids.is_empty() && p.example_indices.is_empty());
        assert_eq!(p.efficiency, 0.0);
        assert!(pack_examples(&[], opts(0, OverLong::Drop)).is_err());
        assert!(pack_examples(&[], opts(MAX_SEQ_LEN + 1, OverLong::Drop)).is_err());
        let bad = SftExample { input_ids: vec![1, 2], labels: vec![1] };
        assert!(pack_examples(&[bad], opts(16, OverLong::Drop)).is_err());
    }

    #[test]
    fn pack_is_fast() {
        let examples: Vec<SftExample> =
            lengths(16_384, 50, 1500).into_iter().enumerate().map(|(i, l)| example(l, i as u32)).collect();
        let t = std::time::Instant::now();
        let p = pack_examples(&examples, opts(4096, OverLong::Truncate)).unwrap();
        let elapsed = t.elapsed();
        assert!(p.efficiency > 0.95);
        // Generous bound: debug builds and busy machines are slow.
        assert!(elapsed.as_secs_f64() < 5.0, "{elapsed:?}");
    }
}
