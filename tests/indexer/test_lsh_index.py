"""native.LshIndex: incremental insert / query / remove / replace, persistence."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer import native


def doc(seed: int, n: int = 80) -> str:
    rng = random.Random(seed)
    return " ".join(f"t{rng.randrange(3000)}" for _ in range(n))


def variant(text: str) -> str:
    """Same shingles: case and punctuation changed."""
    return ", ".join(w.upper() for w in text.split())


def edited(text: str, k: int) -> str:
    words = text.split()
    words[k] = "changed"
    return " ".join(words)


@pytest.fixture
def index() -> native.LshIndex:
    idx = native.LshIndex(threshold=0.7, num_perm=128)
    idx.insert(["a", "b", "c"], [doc(1), doc(2), doc(3)])
    return idx


def test_properties() -> None:
    idx = native.LshIndex(threshold=0.6, num_perm=96, seed=5, shingle="char", shingle_size=4, strip_boilerplate=True)
    assert idx.threshold == 0.6 and idx.num_perm == 96 and idx.seed == 5
    assert idx.shingle == "char" and idx.shingle_size == 4 and idx.strip_boilerplate is True
    assert (idx.bands, idx.rows) == native.lsh_params(0.6, 96)
    assert len(idx) == 0 and "x" not in idx
    assert "LshIndex(len=0" in repr(idx)
    default = native.LshIndex()
    assert (default.threshold, default.num_perm, default.seed, default.shingle, default.shingle_size) == (0.8, 128, 1, "word", 5)
    assert default.strip_boilerplate is False


def test_insert_query_len_contains(index: native.LshIndex) -> None:
    assert len(index) == 3 and "a" in index and "b" in index and "z" not in index
    results = index.query([variant(doc(1)), doc(2), edited(doc(3), 40), doc(99), ""])
    assert results[0] == [("a", 1.0)]
    assert results[1] == [("b", 1.0)]
    assert [k for k, _ in results[2]] == ["c"] and 0.7 <= results[2][0][1] < 1.0
    assert results[3] == []
    assert results[4] == []  # no shingles: never matches


def test_similarity_is_the_minhash_estimate(index: native.LshIndex) -> None:
    q = edited(edited(doc(3), 10), 60)
    [[(key, sim)]] = index.query([q])
    sig = native.minhash_signatures([q, doc(3)], num_perm=128, seed=1)
    assert key == "c" and sim == pytest.approx(float(np.mean(sig[0] == sig[1])))


def test_results_sorted_by_similarity() -> None:
    idx = native.LshIndex(threshold=0.5)
    base = doc(10, 200)
    idx.insert(["exact", "one", "three"], [base, edited(base, 100), edited(edited(edited(base, 20), 100), 180)])
    [res] = idx.query([base])
    assert [k for k, _ in res] == ["exact", "one", "three"]
    sims = [s for _, s in res]
    assert sims == sorted(sims, reverse=True) and sims[0] == 1.0


def test_remove(index: native.LshIndex) -> None:
    assert index.remove(["a", "nope", "a"]) == 1
    assert len(index) == 2 and "a" not in index
    assert index.query([doc(1)]) == [[]]
    assert index.remove([]) == 0
    # the freed slot is reused without disturbing other documents
    index.insert(["d"], [doc(4)])
    assert len(index) == 3
    assert index.query([doc(4), doc(2), doc(1)]) == [[("d", 1.0)], [("b", 1.0)], []]


def test_replace(index: native.LshIndex) -> None:
    index.insert(["b"], [doc(20)])
    assert len(index) == 3
    assert index.query([doc(2)]) == [[]]
    assert index.query([doc(20)]) == [[("b", 1.0)]]
    # the same key twice in one batch: the last one wins
    index.insert(["e", "e"], [doc(30), doc(31)])
    assert len(index) == 4
    assert index.query([doc(30), doc(31)]) == [[], [("e", 1.0)]]


def test_save_load_roundtrip(index: native.LshIndex, tmp_path) -> None:
    index.remove(["b"])
    index.insert(["unicode ключ 😀", "empty"], [doc(5), ""])
    path = tmp_path / "index.lsh"
    index.save(path)
    assert path.is_file() and list(tmp_path.iterdir()) == [path]  # no temporary file left
    loaded = native.LshIndex.load(str(path))
    assert len(loaded) == len(index) == 4
    for key in ("a", "c", "unicode ключ 😀", "empty"):
        assert key in loaded
    assert "b" not in loaded
    for attr in ("threshold", "bands", "rows", "num_perm", "seed", "shingle", "shingle_size", "strip_boilerplate"):
        assert getattr(loaded, attr) == getattr(index, attr)
    queries = [doc(1), doc(2), doc(3), doc(5), edited(doc(1), 3), "", doc(77)]
    assert loaded.query(queries) == index.query(queries)
    # saving over an existing file replaces it
    loaded.remove(["a"])
    loaded.save(path)
    assert len(native.LshIndex.load(path)) == 3


@given(st.lists(st.tuples(st.sampled_from(["ins", "del"]), st.sampled_from("abcdef"), st.integers(0, 8)), max_size=25))
def test_model_based_against_a_dict(ops) -> None:
    idx = native.LshIndex(threshold=0.8, num_perm=64)
    model: dict[str, str] = {}
    for op, key, seed in ops:
        if op == "ins":
            text = doc(seed, 30) if seed else ""
            idx.insert([key], [text])
            model[key] = text
        else:
            assert idx.remove([key]) == int(key in model)
            model.pop(key, None)
    assert len(idx) == len(model)
    for key in "abcdef":
        assert (key in idx) == (key in model)
    for key, text in model.items():
        [res] = idx.query([text])
        if text:
            assert (key, 1.0) in res
            # every match stores the same text (distinct seeds are unrelated texts)
            assert {model[k] for k, _ in res} == {text}
        else:
            assert res == []


def test_insert_argument_errors(index: native.LshIndex) -> None:
    with pytest.raises(native.InvalidInputError, match="2 keys for 1 texts"):
        index.insert(["x", "y"], [doc(1)])
    with pytest.raises(native.InvalidInputError, match="keys must be a list of str"):
        index.insert([1], [doc(1)])  # type: ignore[list-item]
    with pytest.raises(native.InvalidInputError, match=r"texts\[1\]"):
        index.insert(["x", "y"], [doc(1), None])  # type: ignore[list-item]
    with pytest.raises(native.InvalidInputError, match="keys must be a list of str"):
        index.remove([None])  # type: ignore[list-item]
    assert len(index) == 3  # nothing half-inserted
