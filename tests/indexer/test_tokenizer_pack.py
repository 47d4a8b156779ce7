"""Tokenizer, chat-formatted SFT examples (prompt masking) and packing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer import native
from refimpl import IGNORE, sft_example

# --------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------

CONTENT_ALPHABET = st.sampled_from(
    list("abcdefghij XYZ.,!?'\n\t0123456789") + ["é", "ü", "ß", "Ж", "中", "😀", "👍🏽", "<|im_end|>", "  ", "What is", " asthma"]
)
contents = st.lists(CONTENT_ALPHABET, max_size=20).map("".join)


def test_tokenizer_loading(tiny_tokenizer_path, tiny_tokenizer) -> None:
    for token, expected in [("<pad>", 0), ("<|im_start|>", 1), ("<|im_end|>", 2)]:
        assert tiny_tokenizer.token_to_id(token) == expected
    assert tiny_tokenizer.token_to_id("definitely not a token") is None
    # a model directory works as well as the file
    by_dir = native.load_tokenizer(tiny_tokenizer_path.parent)
    assert by_dir.encode_batch(["What is asthma?"]) == tiny_tokenizer.encode_batch(["What is asthma?"])
    from_str = native.Tokenizer.from_str(tiny_tokenizer_path.read_text(encoding="utf-8"))
    assert from_str.encode_batch(["Hello there"]) == tiny_tokenizer.encode_batch(["Hello there"])


@given(st.lists(contents, max_size=6))
def test_encode_batch_equals_hf_tokenizers(tiny_tokenizer, hf_tiny, texts: list[str]) -> None:
    expected = [hf_tiny.encode(t, add_special_tokens=False).ids for t in texts]
    assert tiny_tokenizer.encode_batch(texts) == expected
    assert tiny_tokenizer.encode_batch([t.encode() for t in texts]) == expected


def test_special_tokens_in_text_become_their_ids(tiny_tokenizer) -> None:
    [ids] = tiny_tokenizer.encode_batch(["<|im_start|>user\nHi<|im_end|>"])
    assert ids[0] == 1 and ids[-1] == 2
    assert tiny_tokenizer.encode_batch([""]) == [[]]


# --------------------------------------------------------------------------
# SFT examples
# --------------------------------------------------------------------------

FORMATS = [
    native.ChatFormat.chatml(),
    native.ChatFormat.chatml(default_system="You are a helpful assistant."),
    native.ChatFormat(bos="<pad>", system_prefix="[S]", system_suffix="[/S]\n", user_prefix="Q: ", user_suffix="\n",
                      assistant_prefix="A: ", assistant_suffix="<|im_end|>", default_system="Be brief."),
]


@st.composite
def conversations(draw) -> list[dict[str, str]]:
    conv = []
    if draw(st.booleans()):
        conv.append({"role": "system", "content": draw(contents)})
    for _ in range(draw(st.integers(1, 3))):
        conv.append({"role": "user", "content": draw(contents)})
        conv.append({"role": "assistant", "content": draw(contents.filter(bool))})
    return conv


@given(st.lists(conversations(), min_size=1, max_size=4), st.sampled_from(FORMATS))
def test_build_sft_examples_equals_reference(tiny_tokenizer, hf_tiny, convs, fmt) -> None:
    out = native.build_sft_examples(tiny_tokenizer, convs, fmt)
    assert len(out) == len(convs)
    for (ids, labels), conv in zip(out, convs):
        ref_ids, ref_labels = sft_example(hf_tiny, conv, fmt)
        assert ids == ref_ids
        assert labels == ref_labels


def test_build_sft_examples_masks_exactly_the_prompt(tiny_tokenizer, hf_tiny) -> None:
    fmt = native.ChatFormat.chatml(default_system="You are a helpful assistant.")
    conv = [{"role": "user", "content": "What is asthma?"}, {"role": "assistant", "content": "A chronic disease."}]
    [(ids, labels)] = native.build_sft_examples(tiny_tokenizer, [conv], fmt)
    prompt = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is asthma?<|im_end|>\n"
              "<|im_start|>assistant\n")
    n_prompt = len(hf_tiny.encode("<|im_start|>system\n").ids + hf_tiny.encode("You are a helpful assistant.").ids
                   + hf_tiny.encode("<|im_end|>\n<|im_start|>user\n").ids + hf_tiny.encode("What is asthma?").ids
                   + hf_tiny.encode("<|im_end|>\n<|im_start|>assistant\n").ids)
    assert labels[:n_prompt] == [IGNORE] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:] and all(x >= 0 for x in labels[n_prompt:])
    assert hf_tiny.decode(ids, skip_special_tokens=False) == prompt + "A chronic disease.<|im_end|>\n"
    assert ids[n_prompt:][-2:] == hf_tiny.encode("<|im_end|>\n").ids  # the end of turn is learned


def test_own_system_message_replaces_default(tiny_tokenizer, hf_tiny) -> None:
    fmt = native.ChatFormat.chatml(default_system="DEFAULT")
    conv = [{"role": "system", "content": "Mine."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    [(ids, _)] = native.build_sft_examples(tiny_tokenizer, [conv], fmt)
    text = hf_tiny.decode(ids, skip_special_tokens=False)
    assert "DEFAULT" not in text and text.startswith("<|im_start|>system\nMine.<|im_end|>\n")


# --------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------


def make_examples(specs: list[tuple[int, int]]) -> list[tuple[list[int], list[int]]]:
    """Examples with distinct token ids; the first `prompt` tokens are masked."""
    out = []
    for i, (length, prompt) in enumerate(specs):
        ids = [1000 * (i + 1) + k for k in range(length)]
        labels = [IGNORE if k < prompt else t for k, t in enumerate(ids)]
        out.append((ids, labels))
    return out


def check_packed(p: native.PackedBatch, examples, seq_len: int, pad_id: int, overlong: str) -> None:
    lengths = [len(ids) for ids, _ in examples]
    n_rows = p.num_sequences
    for arr in (p.input_ids, p.labels, p.position_ids):
        assert arr.shape == (n_rows, seq_len) and arr.dtype == np.int64
    assert p.seq_len == seq_len
    assert len(p.example_indices) == len(p.example_lengths) == n_rows

    expected_kept = [i for i, n in enumerate(lengths) if 0 < n <= seq_len or (n > seq_len and overlong == "truncate")]
    placed = [i for row in p.example_indices for i in row]
    assert sorted(placed) == expected_kept, "every kept example exactly once, no other"
    assert p.truncated == (sum(n > seq_len for n in lengths) if overlong == "truncate" else 0)
    assert p.dropped == sum(n == 0 for n in lengths) + (sum(n > seq_len for n in lengths) if overlong == "drop" else 0)

    real = 0
    for row, (idx, lens) in enumerate(zip(p.example_indices, p.example_lengths)):
        assert lens == sorted(lens, reverse=True), "longest first"
        at = 0
        for i, n in zip(idx, lens):
            ids, labels = examples[i]
            assert n == min(len(ids), seq_len)
            assert p.input_ids[row, at : at + n].tolist() == ids[:n]  # never split: the whole example (or its head)
            assert p.labels[row, at : at + n].tolist() == labels[:n]
            assert p.position_ids[row, at : at + n].tolist() == list(range(n))
            at += n
        assert at <= seq_len
        real += at
        assert (p.input_ids[row, at:] == pad_id).all()
        assert (p.labels[row, at:] == IGNORE).all()
        assert p.position_ids[row, at:].tolist() == list(range(seq_len - at))
    assert p.efficiency == pytest.approx(real / (n_rows * seq_len) if n_rows else 0.0)
    # any-fit packing: no two rows could have been merged into one
    totals = sorted(sum(lens) for lens in p.example_lengths)
    if len(totals) >= 2:
        assert totals[0] + totals[1] > seq_len


@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=30),
    st.integers(1, 48),
    st.sampled_from(["truncate", "drop"]),
    st.integers(0, 5),
)
def test_pack_examples_invariants(specs, seq_len: int, overlong: str, pad_id: int) -> None:
    examples = make_examples(specs)
    p = native.pack_examples(examples, seq_len=seq_len, pad_id=pad_id, overlong=overlong)  # type: ignore[arg-type]
    check_packed(p, examples, seq_len, pad_id, overlong)


def test_pack_best_fit_decreasing_layout() -> None:
    examples = make_examples([(3, 0), (6, 0), (2, 0), (5, 0), (4, 0)])
    p = native.pack_examples(examples, seq_len=8, pad_id=7, overlong="drop")
    assert p.example_indices == [[1, 2], [3, 0], [4]]
    assert p.example_lengths == [[6, 2], [5, 3], [4]]
    assert p.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 0, 1], [0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 3, 0, 1, 2, 3]]
    assert p.input_ids[2, 4:].tolist() == [7, 7, 7, 7]
    assert p.efficiency == pytest.approx(20 / 24)


def test_pack_truncate_and_drop_counts() -> None:
    examples = make_examples([(5, 2), (12, 3), (0, 0), (10, 0), (11, 11)])
    t = native.pack_examples(examples, seq_len=10, overlong="truncate")
    assert (t.truncated, t.dropped) == (2, 1)
    row = next(r for r, idx in enumerate(t.example_indices) if 1 in idx)
    start = sum(t.example_lengths[row][: t.example_indices[row].index(1)])
    assert t.input_ids[row, start : start + 10].tolist() == examples[1][0][:10]  # keeps the first tokens
    d = native.pack_examples(examples, seq_len=10, overlong="drop")
    assert (d.truncated, d.dropped) == (0, 3)
    assert sorted(i for row in d.example_indices for i in row) == [0, 3]
    empty = native.pack_examples([], seq_len=16)
    assert empty.num_sequences == 0 and empty.input_ids.shape == (0, 16) and empty.efficiency == 0.0


@given(st.lists(conversations(), min_size=1, max_size=6), st.integers(8, 64), st.sampled_from(["truncate", "drop"]))
def test_pack_conversations_equals_build_then_pack(tiny_tokenizer, convs, seq_len: int, overlong: str) -> None:
    fmt = FORMATS[1]
    packed = native.pack_conversations(tiny_tokenizer, convs, fmt, seq_len=seq_len, pad_id=0, overlong=overlong)  # type: ignore[arg-type]
    examples = native.build_sft_examples(tiny_tokenizer, convs, fmt)
    reference = native.pack_examples(examples, seq_len=seq_len, pad_id=0, overlong=overlong)  # type: ignore[arg-type]
    check_packed(packed, examples, seq_len, 0, overlong)
    assert packed.example_indices == reference.example_indices
    assert (packed.input_ids == reference.input_ids).all() and (packed.labels == reference.labels).all()


def test_pack_conversations_with_pad_token(tiny_tokenizer) -> None:
    pad = tiny_tokenizer.token_to_id("<pad>")
    convs = [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]] * 3
    p = native.pack_conversations(tiny_tokenizer, convs, native.ChatFormat.chatml(), seq_len=256, pad_id=pad)
    assert p.num_sequences == 1 and p.example_indices == [[0, 1, 2]]
    used = sum(p.example_lengths[0])
    assert (p.input_ids[0, used:] == pad).all() and (p.labels[0, used:] == IGNORE).all()
    assert p.efficiency == pytest.approx(used / 256)
