"""Fusion of the dense and BM25 rankings, on hand-made rankings with known results."""

from __future__ import annotations

import pytest

from indexer.search import RRF_K, reciprocal_rank_fusion, score_fusion


def test_score_fusion_scales_each_ranking_and_mixes_them() -> None:
    dense = [(1, 0.9), (2, 0.5)]
    bm25 = [(3, 12.0), (1, 4.0), (4, 2.0)]
    # cosines of every candidate: chunks 3 and 4 came from BM25 alone
    cosines = {1: 0.9, 2: 0.5, 3: 0.7, 4: 0.1}
    fused = {f.chunk_id: f for f in score_fusion(dense, bm25, cosines, dense_weight=0.5)}
    # dense scaled over [0.1, 0.9], BM25 over [2, 12]; chunk 2 has no BM25 score: 0
    assert fused[1].score == pytest.approx(0.5 * 1.0 + 0.5 * 0.2)
    assert fused[2].score == pytest.approx(0.5 * 0.5 + 0.0)
    assert fused[3].score == pytest.approx(0.5 * 0.75 + 0.5 * 1.0)
    assert fused[4].score == pytest.approx(0.0)
    assert fused[3].dense_score == 0.7 and fused[3].dense_rank is None and fused[3].bm25_rank == 1
    assert [f.chunk_id for f in score_fusion(dense, bm25, cosines)] == [3, 1, 2, 4]


@pytest.mark.parametrize("weight, first", [(1.0, 1), (0.0, 3)])
def test_score_fusion_weight_picks_one_side(weight: float, first: int) -> None:
    fused = score_fusion([(1, 0.9), (2, 0.5)], [(3, 12.0), (1, 4.0)], {1: 0.9, 2: 0.5, 3: 0.2}, weight)
    assert fused[0].chunk_id == first


def test_score_fusion_strong_ranking_is_not_dragged_down_by_a_flat_one() -> None:
    """RRF gives every rank the same weight; score fusion keeps a confident
    winner first when the other ranking barely separates its candidates."""
    bm25 = [(10, 30.0), (11, 5.0), (12, 4.9)]
    dense = [(11, 0.52), (12, 0.51), (10, 0.50), (13, 0.30), (14, 0.10)]
    cosines = dict(dense)
    assert score_fusion(dense, bm25, cosines)[0].chunk_id == 10
    assert reciprocal_rank_fusion(dense, bm25)[0].chunk_id == 11


def test_score_fusion_with_one_ranking_keeps_its_order() -> None:
    dense = [(5, 0.8), (6, 0.6), (7, 0.2)]
    assert [f.chunk_id for f in score_fusion(dense, [], dict(dense))] == [5, 6, 7]
    assert score_fusion([], [], {}) == []


def test_rrf_scores() -> None:
    fused = {f.chunk_id: f.score for f in reciprocal_rank_fusion([(1, 0.9), (2, 0.5)], [(2, 3.0)])}
    assert fused[1] == pytest.approx(1 / (RRF_K + 1))
    assert fused[2] == pytest.approx(1 / (RRF_K + 2) + 1 / (RRF_K + 1))
