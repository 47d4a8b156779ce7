"""Bad input raises clear exceptions under native.DataError (a ValueError) — never a crash."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from indexer import native

PASSAGE = "The quick brown fox jumps over the lazy dog near the river bank today."

# Every batch entry point that takes texts, called on one batch.
TEXT_CALLS = {
    "normalize": lambda texts: native.normalize(texts),
    "content_hashes": lambda texts: native.content_hashes(texts),
    "exact_dedup": lambda texts: native.exact_dedup(texts),
    "minhash_signatures": lambda texts: native.minhash_signatures(texts),
    "minhash_char": lambda texts: native.minhash_signatures(texts, shingle="char"),
    "chunk": lambda texts: native.chunk(texts),
    "decontaminate_train": lambda texts: native.decontaminate(texts, [PASSAGE]),
    "decontaminate_eval": lambda texts: native.decontaminate([PASSAGE], texts),
    "lsh_insert": lambda texts: native.LshIndex().insert(["k0", "k1", "k2"][: len(texts) if isinstance(texts, list) else 1], texts),
    "lsh_query": lambda texts: native.LshIndex().query(texts),
}


def test_error_hierarchy() -> None:
    for cls in (native.InvalidInputError, native.TokenizerError, native.CorruptFileError, native.DataIOError):
        assert issubclass(cls, native.DataError)
    assert issubclass(native.DataError, ValueError)


@pytest.mark.parametrize("call", TEXT_CALLS.values(), ids=TEXT_CALLS.keys())
def test_invalid_utf8_bytes_names_the_item(call) -> None:
    with pytest.raises(native.InvalidInputError, match=r"\[2\] is not valid UTF-8 \(invalid byte at offset 3\)"):
        call(["fine", b"also fine", b"abc\xff\xfe"])


@pytest.mark.parametrize("call", TEXT_CALLS.values(), ids=TEXT_CALLS.keys())
def test_lone_surrogate_names_the_item(call) -> None:
    with pytest.raises(native.InvalidInputError, match=r"\[1\] is not valid Unicode.*surrogate"):
        call(["fine", "bad \ud800 text"])


@pytest.mark.parametrize("call", TEXT_CALLS.values(), ids=TEXT_CALLS.keys())
@pytest.mark.parametrize(("item", "type_name"), [(42, "int"), (None, "NoneType"), (["nested"], "list"), (3.5, "float")])
def test_non_string_items_name_the_index(call, item, type_name: str) -> None:
    with pytest.raises(native.InvalidInputError, match=rf"\[1\] must be str or bytes, got {type_name}"):
        call(["fine", item])


@pytest.mark.parametrize("call", TEXT_CALLS.values(), ids=TEXT_CALLS.keys())
@pytest.mark.parametrize("bare", ["a single document", b"a single document"])
def test_bare_string_instead_of_list(call, bare) -> None:
    with pytest.raises(native.InvalidInputError, match="must be a list of texts, not a single"):
        call(bare)


@pytest.mark.parametrize("call", TEXT_CALLS.values(), ids=TEXT_CALLS.keys())
def test_non_iterable(call) -> None:
    with pytest.raises(native.InvalidInputError, match="must be a list of str, got int"):
        call(12)


def test_error_messages_say_which_argument() -> None:
    with pytest.raises(native.InvalidInputError, match=r"^train\[0\]"):
        native.decontaminate([1], [PASSAGE])  # type: ignore[list-item]
    with pytest.raises(native.InvalidInputError, match=r"^eval\[1\]"):
        native.decontaminate([PASSAGE], [PASSAGE, None])  # type: ignore[list-item]
    with pytest.raises(native.InvalidInputError, match=r"^texts\[0\]"):
        native.normalize([b"\x80"])


def test_empty_strings_are_fine() -> None:
    assert native.normalize(["", ""]) == ["", ""]
    assert native.normalize([""], lowercase=True, strip_boilerplate=True) == [""]
    r = native.exact_dedup(["", "x", "", " "])
    assert r.keep.tolist() == [True, True, False, False]  # " " normalizes to ""
    assert native.exact_dedup(["", ""], normalize=False).keep.tolist() == [True, False]
    near = native.near_dedup(["", "", PASSAGE, PASSAGE, " ... "])
    assert near.keep.tolist() == [True, True, True, False, True]  # empty docs stay singletons
    assert near.cluster_of.tolist() == [0, 1, 2, 2, 4]
    sig = native.minhash_signatures([""], num_perm=8)
    assert (sig == np.iinfo(np.uint32).max).all()
    assert native.chunk(["", PASSAGE]) == [[], [(0, len(PASSAGE))]]
    assert native.decontaminate([""], [""]) == ([], 1)
    assert native.content_hashes([""]) == native.content_hashes([b""])
    assert native.normalize([]) == [] and native.minhash_signatures([]).shape == (0, 128)


def test_huge_single_document() -> None:
    # ~50 MB of varied words and sentences, built by repeating a 1 MB block.
    words = [f"word{i % 9973}" for i in range(160_000)]
    sentences = [" ".join(words[i : i + 16]) + "." for i in range(0, len(words), 16)]
    block = " ".join(sentences) + "\n\n"
    big = block * max(1, (50_000_000 // len(block)) + 1)
    assert len(big) >= 50_000_000
    (norm,) = native.normalize([big])
    assert len(norm) == len(big.rstrip())
    del norm
    sig = native.minhash_signatures([big, block])
    assert sig.shape == (2, 128)
    assert (sig[0] == sig[1]).mean() > 0.8  # the repetition adds few new shingles
    r = native.exact_dedup([big, big, block])
    assert r.keep.tolist() == [True, False, True]
    [chunks] = native.chunk([big])  # 256 tokens, 32 overlap
    assert chunks[0][0] == 0 and chunks[-1][1] == len(big.rstrip())
    assert all(s2 > s1 and e2 > e1 for (s1, e1), (s2, e2) in zip(chunks, chunks[1:]))
    # words and full stops as tokens; blocks end in a blank line, so counts add up
    n_tokens = len(re.findall(r"\w+|[^\w\s]", block)) * (len(big) // len(block))
    assert len(chunks) >= n_tokens / 256


def test_missing_tokenizer_file(tmp_path) -> None:
    missing = tmp_path / "nope" / "tokenizer.json"
    with pytest.raises(native.DataIOError, match="nope"):
        native.load_tokenizer(missing)
    with pytest.raises(native.DataIOError):
        native.Tokenizer.from_file(str(missing))
    with pytest.raises(native.DataIOError):
        native.load_tokenizer(tmp_path)  # a directory without tokenizer.json


@pytest.mark.parametrize("content", ["{ this is not a tokenizer", "[]", '{"model": {"type": "Nope"}}', ""])
def test_corrupt_tokenizer_file(tmp_path, content: str) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(native.TokenizerError, match="tokenizer"):
        native.load_tokenizer(path)
    with pytest.raises(native.TokenizerError):
        native.Tokenizer.from_str(content)


def test_tokenizer_file_that_is_not_utf8(tmp_path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(native.DataError):
        native.load_tokenizer(path)


BAD_THRESHOLDS = [0.0, -0.1, 1.5, math.nan, math.inf]


@pytest.mark.parametrize("threshold", BAD_THRESHOLDS)
def test_threshold_out_of_range(threshold: float) -> None:
    sig = native.minhash_signatures([PASSAGE], num_perm=32)
    for call in (
        lambda: native.near_dedup([PASSAGE], threshold=threshold),
        lambda: native.lsh_params(threshold),
        lambda: native.LshIndex(threshold=threshold),
        lambda: native.cluster_signatures(sig, threshold=threshold),
    ):
        with pytest.raises(native.InvalidInputError, match=r"threshold must be in \(0, 1\]"):
            call()


def test_threshold_one_is_valid() -> None:
    # edit_min_words=0: "+ extra" is one word inserted, which the edit test would join
    r = native.near_dedup([PASSAGE, PASSAGE.upper(), PASSAGE + " extra"], threshold=1.0, edit_min_words=0)
    assert r.keep.tolist() == [True, False, True]


@pytest.mark.parametrize("num_perm", [0, 4097])
def test_num_perm_out_of_range(num_perm: int) -> None:
    for call in (
        lambda: native.minhash_signatures([PASSAGE], num_perm=num_perm),
        lambda: native.near_dedup([PASSAGE], num_perm=num_perm),
        lambda: native.lsh_params(0.8, num_perm),
        lambda: native.LshIndex(num_perm=num_perm),
    ):
        with pytest.raises(native.InvalidInputError, match="num_perm"):
            call()
    with pytest.raises(native.InvalidInputError):
        native.cluster_signatures(np.zeros((3, 0), dtype=np.uint32))


def test_negative_sizes_are_data_errors() -> None:
    value = -1
    # Out-of-range settings raise under DataError like every other bad input
    # (not a bare OverflowError from the int conversion).
    for call in (
        lambda: native.minhash_signatures([PASSAGE], num_perm=value),
        lambda: native.chunk([PASSAGE], max_tokens=value),
        lambda: native.pack_examples([([1], [1])], seq_len=value),
    ):
        with pytest.raises(native.DataError):
            call()


@pytest.mark.parametrize(("kind", "size", "match"), [("token", 5, "shingle kind"), ("", 5, "shingle kind"), ("word", 0, "shingle size"), ("char", 65, "shingle size")])
def test_bad_shingles(kind: str, size: int, match: str) -> None:
    for call in (
        lambda: native.minhash_signatures([PASSAGE], shingle=kind, shingle_size=size),  # type: ignore[arg-type]
        lambda: native.near_dedup([PASSAGE], shingle=kind, shingle_size=size),  # type: ignore[arg-type]
        lambda: native.LshIndex(shingle=kind, shingle_size=size),
    ):
        with pytest.raises(native.InvalidInputError, match=match):
            call()


def test_bad_keep_policy() -> None:
    with pytest.raises(native.InvalidInputError, match="keep must be 'first' or 'longest'"):
        native.near_dedup([PASSAGE], keep="shortest")  # type: ignore[arg-type]


@pytest.mark.parametrize(("max_tokens", "overlap"), [(10, 10), (10, 11), (1, 1), (0, 0)])
def test_chunk_overlap_not_below_max_tokens(max_tokens: int, overlap: int) -> None:
    with pytest.raises(native.InvalidInputError, match="max_tokens"):
        native.chunk([PASSAGE], max_tokens=max_tokens, overlap=overlap)


CONV = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def test_pack_seq_len_zero(tiny_tokenizer) -> None:
    with pytest.raises(native.InvalidInputError, match="seq_len"):
        native.pack_examples([([1, 2], [1, 2])], seq_len=0)
    with pytest.raises(native.InvalidInputError, match="seq_len"):
        native.pack_conversations(tiny_tokenizer, [CONV], native.ChatFormat.chatml(), seq_len=0)
    with pytest.raises(native.InvalidInputError, match="seq_len"):
        native.pack_examples([], seq_len=(1 << 20) + 1)


def test_pack_bad_examples_and_modes() -> None:
    with pytest.raises(native.InvalidInputError, match=r"examples\[1\] has 2 input_ids but 1 labels"):
        native.pack_examples([([1], [1]), ([1, 2], [1])], seq_len=8)
    with pytest.raises(native.InvalidInputError, match="overlong must be 'truncate' or 'drop'"):
        native.pack_examples([([1], [1])], seq_len=8, overlong="split")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("conversation", "match"),
    [
        ([{"role": "user", "content": "Hi"}, {"role": "tool", "content": "x"}], r"conversations\[1\]\[1\] has role \"tool\"; use system, user or assistant"),
        ([{"role": "user", "content": "Hi"}, {"content": "x"}], r"conversations\[1\]\[1\] needs a str \"role\""),
        ([{"role": "assistant", "content": 5}], r"conversations\[1\]\[0\] needs a str \"content\""),
        ([{"role": "user", "content": "Hi"}], r"conversation 1 has no assistant message"),
        ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}], r"conversation 1: assistant message 1 has empty content"),
        ("not a list of messages", r"conversations\[1\]\[0\] needs a str"),
    ],
)
def test_bad_conversations(tiny_tokenizer, conversation, match: str) -> None:
    for call in (
        lambda: native.build_sft_examples(tiny_tokenizer, [CONV, conversation], native.ChatFormat.chatml()),
        lambda: native.pack_conversations(tiny_tokenizer, [CONV, conversation], native.ChatFormat.chatml()),
    ):
        with pytest.raises(native.InvalidInputError, match=match):
            call()


def test_bad_chat_format_mapping(tiny_tokenizer) -> None:
    from indexer import _native

    fmt = native.ChatFormat.chatml().as_dict()
    del fmt["user_prefix"]
    with pytest.raises(native.InvalidInputError, match="chat_format is missing \"user_prefix\""):
        _native.build_sft_examples(tiny_tokenizer, [CONV], fmt)
    with pytest.raises(native.InvalidInputError, match="chat_format must be a mapping"):
        _native.build_sft_examples(tiny_tokenizer, [CONV], ["bos"])


@pytest.fixture
def saved_index(tmp_path):
    idx = native.LshIndex(num_perm=32)
    idx.insert(["a", "b"], [PASSAGE, "another document with enough words in it"])
    path = tmp_path / "index.lsh"
    idx.save(path)
    return path


@pytest.mark.parametrize("cut", [1, 9, 20, 60, 150])
def test_truncated_index_file(saved_index, cut: int) -> None:
    data = saved_index.read_bytes()
    saved_index.write_bytes(data[: len(data) - cut])
    with pytest.raises(native.CorruptFileError, match="LSH index"):
        native.LshIndex.load(saved_index)


def test_every_flipped_byte_is_detected(saved_index) -> None:
    data = saved_index.read_bytes()
    for pos in range(0, len(data), 7):
        corrupt = bytearray(data)
        corrupt[pos] ^= 0x5A
        saved_index.write_bytes(bytes(corrupt))
        with pytest.raises(native.CorruptFileError):
            native.LshIndex.load(saved_index)


@pytest.mark.parametrize("content", [b"", b"DCLSH", b"not an index at all, just some text " * 4])
def test_not_an_index_file(tmp_path, content: bytes) -> None:
    path = tmp_path / "index.lsh"
    path.write_bytes(content)
    with pytest.raises(native.CorruptFileError):
        native.LshIndex.load(path)


def test_missing_index_file_and_unwritable_path(tmp_path) -> None:
    with pytest.raises(native.DataIOError):
        native.LshIndex.load(tmp_path / "missing.lsh")
    with pytest.raises(native.DataIOError):
        native.LshIndex().save(tmp_path / "no" / "such" / "dir" / "index.lsh")
    with pytest.raises(native.DataError):
        native.LshIndex().save(tmp_path)  # a directory
