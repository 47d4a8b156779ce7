"""native.decontaminate: tuning examples sharing word n-grams with evaluation items."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer import native
import refimpl

PASSAGE = (
    "The mitochondria is the powerhouse of the cell and it produces most of the chemical "
    "energy needed to power the biochemical reactions of the cell"
)


def filler(seed: int, n: int) -> str:
    rng = random.Random(seed)
    return " ".join(f"f{rng.randrange(10_000)}" for _ in range(n))


def test_planted_13gram_is_found() -> None:
    # 13 consecutive words of the eval item planted into a longer train text.
    eval_words = filler(1, 40).split()
    planted = " ".join(eval_words[10:23])
    train = [filler(2, 50), f"{filler(3, 20)} {planted.upper()}! {filler(4, 20)}", filler(5, 50)]
    overlaps, skipped = native.decontaminate(train, [filler(6, 30), " ".join(eval_words)])
    assert skipped == 0
    assert overlaps == [native.Overlap(train_index=1, eval_indices=[1], shared_ngrams=1)]


def test_changed_text_is_not_found() -> None:
    words = filler(1, 25).split()
    changed = list(words)
    changed[12] = "different"  # every 13-word window contains position 12
    overlaps, _ = native.decontaminate([" ".join(changed)], [" ".join(words)])
    assert overlaps == []
    # 12 shared words are not enough either
    overlaps, _ = native.decontaminate([" ".join(words[:12])], [" ".join(words)])
    assert overlaps == []


def test_copied_passage_counts_every_window() -> None:
    train = f"Some unrelated introduction here. {PASSAGE}. And then a conclusion follows."
    overlaps, skipped = native.decontaminate(["nothing to see here at all", train], [PASSAGE])
    n_words = len(PASSAGE.split())
    assert overlaps == [native.Overlap(1, [0], n_words - 13 + 1)]
    assert skipped == 0


def test_short_eval_items_skipped_and_counted() -> None:
    question = "What is the capital city of the Republic of France?"  # 10 words: matched whole
    evals = ["yes no maybe", "", "one two three four five six seven", question, PASSAGE]
    train = ["Quiz: what is the capital city of the republic of france? Paris.", "what is the capital city of Germany"]
    overlaps, skipped = native.decontaminate(train, evals)
    assert skipped == 3  # fewer than min_words=8 words
    assert overlaps == [native.Overlap(0, [3], 1)]
    # lowering min_words brings the 7-word item in
    overlaps, skipped = native.decontaminate(["one two three four five six seven eight"], evals, min_words=7)
    assert skipped == 2 and overlaps == [native.Overlap(0, [2], 1)]


def test_multiple_eval_hits_sorted_distinct() -> None:
    other = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron"
    train = f"{other} and {PASSAGE} and again {PASSAGE}"
    evals = [PASSAGE, "completely unrelated evaluation text that is long enough to matter here", other, PASSAGE]
    overlaps, _ = native.decontaminate(["clean", train], evals)
    assert len(overlaps) == 1
    assert overlaps[0].train_index == 1 and overlaps[0].eval_indices == [0, 2, 3]
    assert overlaps[0].shared_ngrams == (len(PASSAGE.split()) - 12) + 3


def test_empty_inputs() -> None:
    assert native.decontaminate([], [PASSAGE]) == ([], 0)
    assert native.decontaminate([PASSAGE], []) == ([], 0)
    assert native.decontaminate(["", " ,. "], ["", PASSAGE]) == ([], 1)


@pytest.mark.parametrize(("ngram", "min_words"), [(0, 0), (13, 0), (0, 1), (5, 8)])
def test_invalid_options(ngram: int, min_words: int) -> None:
    with pytest.raises(native.InvalidInputError, match="ngram|min_words"):
        native.decontaminate(["a"], ["a"], ngram=ngram, min_words=min_words)


VOCAB = ["a", "b", "c", "d", "e", "Foo", "bar", "x1"]
texts = st.lists(st.sampled_from(VOCAB), max_size=14).map(lambda ws: " ".join(ws))


@given(st.lists(texts, max_size=8), st.lists(texts, max_size=8), st.integers(1, 5), st.integers(1, 5))
def test_matches_python_reference(train: list[str], evals: list[str], ngram: int, min_words: int) -> None:
    min_words = min(min_words, ngram)
    overlaps, skipped = native.decontaminate(train, evals, ngram=ngram, min_words=min_words)
    expected, expected_skipped = refimpl.decontaminate(train, evals, ngram, min_words)
    assert skipped == expected_skipped
    assert [(o.train_index, o.eval_indices, o.shared_ngrams) for o in overlaps] == expected
