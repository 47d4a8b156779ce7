"""native.exact_dedup and content_hashes against a set-based first-occurrence reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer import native
from refimpl import first_occurrence_dedup

# A small pool makes duplicates (exact and after normalization) frequent.
POOL = ["a b", "a  b", "A b", " a b\n", "a\u200bb", "x", "X", "", " ", "ﬁ", "fi", "café", "cafe\u0301", "\t"]
texts_from_pool = st.lists(st.one_of(st.sampled_from(POOL), st.text(max_size=6)), max_size=40)


def check(texts: list[str], result: native.ExactDedupResult, reference: list[object]) -> None:
    keep, dup = first_occurrence_dedup(reference)
    assert result.keep.dtype == np.bool_ and result.duplicate_of.dtype == np.int64
    assert result.keep.tolist() == keep
    assert result.duplicate_of.tolist() == dup
    assert result.num_duplicates == keep.count(False)


@given(texts_from_pool, st.sampled_from([64, 128]))
def test_without_normalization_equals_python_first_occurrence(texts: list[str], bits: int) -> None:
    check(texts, native.exact_dedup(texts, bits=bits, normalize=False), texts)


@given(texts_from_pool, st.sampled_from([64, 128]), st.booleans())
def test_with_normalization_equals_reference_on_normalized_text(texts: list[str], bits: int, lowercase: bool) -> None:
    result = native.exact_dedup(texts, bits=bits, normalize=True, lowercase=lowercase)
    check(texts, result, native.normalize(texts, lowercase=lowercase))


def test_normalization_examples() -> None:
    r = native.exact_dedup(["a", "A ", "b"], lowercase=True)
    assert r.keep.tolist() == [True, False, True]
    assert r.duplicate_of.tolist() == [-1, 0, -1]
    r = native.exact_dedup(["a", "A ", "b", "  a\r\n"])
    assert r.keep.tolist() == [True, True, True, False]
    assert r.duplicate_of.tolist() == [-1, -1, -1, 0]
    # NFKC and invisible characters
    assert native.exact_dedup(["ﬁne", "fine", "fi\u200bne"]).keep.tolist() == [True, False, False]
    assert native.exact_dedup(["ﬁne", "fine"], normalize=False).keep.tolist() == [True, True]


def test_duplicate_of_points_at_first_occurrence() -> None:
    texts = ["a", "b", "a", "c", "b", "a"]
    r = native.exact_dedup(texts)
    assert r.keep.tolist() == [True, True, False, True, False, False]
    assert r.duplicate_of.tolist() == [-1, -1, 0, -1, 1, 0]
    assert r.num_duplicates == 3


def test_empty_batch_and_bytes() -> None:
    r = native.exact_dedup([])
    assert r.keep.shape == (0,) and r.duplicate_of.shape == (0,)
    r = native.exact_dedup(["café", "café".encode(), b"cafe"], normalize=False)
    assert r.keep.tolist() == [True, False, True]


@given(st.lists(st.text(max_size=10), max_size=20))
def test_content_hashes(texts: list[str]) -> None:
    h128 = native.content_hashes(texts)
    h64 = native.content_hashes(texts, bits=64)
    assert len(h128) == len(h64) == len(texts)
    assert all(len(h) == 32 and int(h, 16) >= 0 for h in h128)
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in h64)
    # Equal texts hash equal, distinct texts (almost surely) differently.
    for hashes in (h128, h64):
        by_text = dict(zip(texts, hashes))
        assert len(set(by_text.values())) == len(by_text)
        assert [by_text[t] for t in texts] == hashes
    # Bytes hash as their text; hashes are of the texts as they are.
    assert native.content_hashes([t.encode() for t in texts]) == h128


def test_content_hashes_are_not_normalized_and_are_stable() -> None:
    a, b = native.content_hashes(["Hello", "hello"])
    assert a != b
    assert native.content_hashes(["Hello"]) == [a]
    assert native.content_hashes([""], bits=64) == native.content_hashes([b""], bits=64)


@pytest.mark.parametrize("bits", [0, 32, 256])
def test_bad_bits(bits: int) -> None:
    with pytest.raises(native.InvalidInputError, match="64 or 128"):
        native.content_hashes(["a"], bits=bits)  # type: ignore[arg-type]
    with pytest.raises(native.InvalidInputError, match="64 or 128"):
        native.exact_dedup(["a"], bits=bits)  # type: ignore[arg-type]
