"""Retrieval metrics on hand-made rankings whose values are worked out by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.evaluation.metrics import METRICS, evaluate_run, mrr_at_k, ndcg_at_k, recall_at_k

LOG2_3 = math.log2(3)  # discount of rank 2
LOG2_4 = 2.0  # discount of rank 3


def test_ndcg_single_relevant_at_rank_2() -> None:
    # DCG = 1/log2(3), IDCG = 1/log2(2) = 1
    assert ndcg_at_k(["a", "b", "c"], {"b": 1}, 10) == pytest.approx(1 / LOG2_3)
    assert ndcg_at_k(["a", "b", "c"], {"b": 1}, 10) == pytest.approx(0.6309297535714575)


def test_ndcg_graded_uses_linear_gain() -> None:
    # ranking a(1) b(2) c(0): DCG = 1/1 + 2/log2(3); ideal b(2) a(1): IDCG = 2/1 + 1/log2(3)
    expected = (1 + 2 / LOG2_3) / (2 + 1 / LOG2_3)
    assert ndcg_at_k(["a", "b", "c"], {"a": 1, "b": 2, "c": 0}, 10) == pytest.approx(expected)
    assert expected == pytest.approx(0.859719, abs=1e-6)
    # with 2^rel - 1 gains it would be (1 + 3/log2(3)) / (3 + 1/log2(3)) = 0.8318...; check we are not that
    assert ndcg_at_k(["a", "b", "c"], {"a": 1, "b": 2}, 10) != pytest.approx((1 + 3 / LOG2_3) / (3 + 1 / LOG2_3))


def test_ndcg_ideal_counts_unretrieved_relevant_docs() -> None:
    # a found at rank 1, z never retrieved: DCG = 1, IDCG = 1 + 1/log2(3)
    assert ndcg_at_k(["a"], {"a": 1, "z": 1}, 10) == pytest.approx(1 / (1 + 1 / LOG2_3))


def test_ndcg_cutoff_applies_to_ranking_and_ideal() -> None:
    assert ndcg_at_k(["x", "y", "a"], {"a": 1}, 2) == 0.0
    assert ndcg_at_k(["x", "y", "a"], {"a": 1}, 3) == pytest.approx(1 / LOG2_4)
    # three relevant, k=1: the ideal holds one of them, so one hit at rank 1 is perfect
    assert ndcg_at_k(["a"], {"a": 1, "b": 1, "c": 1}, 1) == pytest.approx(1.0)


def test_repeated_ids_count_once_at_their_first_rank() -> None:
    assert ndcg_at_k(["b", "b", "a"], {"a": 1}, 10) == pytest.approx(1 / LOG2_3)
    assert recall_at_k(["a", "a", "b"], {"a", "b"}, 2) == pytest.approx(1.0)
    assert mrr_at_k(["x", "x", "a"], {"a"}, 2) == pytest.approx(0.5)


def test_no_relevant_documents_score_zero() -> None:
    assert ndcg_at_k(["a", "b"], {}, 10) == 0.0
    assert ndcg_at_k(["a", "b"], {"a": 0, "b": 0}, 10) == 0.0
    assert recall_at_k(["a", "b"], set(), 10) == 0.0
    assert mrr_at_k(["a", "b"], set(), 10) == 0.0
    assert ndcg_at_k([], {"a": 1}, 10) == 0.0


def test_recall_at_k() -> None:
    ranked, relevant = ["a", "b", "c", "d"], {"b", "d", "z"}
    assert recall_at_k(ranked, relevant, 1) == 0.0
    assert recall_at_k(ranked, relevant, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, relevant, 4) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, relevant, 100) == pytest.approx(2 / 3)


def test_mrr_at_k() -> None:
    assert mrr_at_k(["x", "y", "a", "b"], {"a", "b"}, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["a"], {"a"}, 1) == 1.0
    assert mrr_at_k(["x", "y", "a"], {"a"}, 2) == 0.0


@pytest.mark.parametrize("fn", [lambda k: ndcg_at_k(["a"], {"a": 1}, k),
                                lambda k: recall_at_k(["a"], {"a"}, k), lambda k: mrr_at_k(["a"], {"a"}, k)])
def test_k_must_be_positive(fn) -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        fn(0)


def test_evaluate_run_averages_over_queries_with_relevant_docs() -> None:
    run = {
        "q1": ["a", "b"],  # relevant a at rank 1: all metrics 1
        "q2": ["x", "c"],  # relevant c at rank 2
        "q3": ["a"],  # no relevant document: not counted
        "q4": [],  # relevant d, nothing retrieved: all metrics 0
    }
    qrels = {"q1": {"a": 1}, "q2": {"c": 1}, "q3": {"a": 0}, "q4": {"d": 2}, "q5": {"e": 1}}  # q5 not in run
    got = evaluate_run(run, qrels)
    assert set(got) == set(METRICS)
    assert got["ndcg@10"] == pytest.approx((1 + 1 / LOG2_3 + 0) / 3)
    assert got["recall@1"] == pytest.approx(1 / 3)
    assert got["recall@5"] == pytest.approx(2 / 3)
    assert got["recall@10"] == pytest.approx(2 / 3)
    assert got["recall@100"] == pytest.approx(2 / 3)
    assert got["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_evaluate_run_recall_at_100_sees_deep_ranks() -> None:
    ranked = [f"x{i}" for i in range(50)] + ["a"]
    got = evaluate_run({"q": ranked}, {"q": {"a": 1, "b": 1}})
    assert got["recall@10"] == 0.0
    assert got["recall@100"] == pytest.approx(0.5)
    assert got["mrr@10"] == 0.0


def test_evaluate_run_without_judged_queries_fails_clearly() -> None:
    with pytest.raises(ValueError, match="query ids match"):
        evaluate_run({"q1": ["a"]}, {"other": {"a": 1}})


grades = st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 3), min_size=1)


@given(grades, st.permutations(list("abcdefghij")), st.integers(1, 12))
def test_ndcg_bounds_and_ideal_ranking_is_one(relevances, ranked, k) -> None:
    assert 0.0 <= ndcg_at_k(ranked, relevances, k) <= 1.0 + 1e-12
    ideal = sorted(relevances, key=lambda d: -relevances[d])
    expected = 1.0 if any(r > 0 for r in relevances.values()) else 0.0
    assert ndcg_at_k(ideal, relevances, k) == pytest.approx(expected)
