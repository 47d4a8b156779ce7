"""Retrieval metrics over ranked lists of ids, following BEIR's pytrec_eval conventions.

For a ranking d_1, d_2, … (ranks from 1; a repeated id counts only at its first
rank) and graded judgements rel(d) (unjudged = 0; relevant means rel > 0):

    nDCG@k   = DCG@k / IDCG@k,   DCG@k = sum_{i=1..k} rel(d_i) / log2(i + 1)
               IDCG@k is DCG@k of the judged grades sorted in decreasing order;
               0 when the query has no relevant document.
               The gain is rel itself (linear), not 2^rel - 1: that is what
               pytrec_eval's ``ndcg_cut`` computes and so what BEIR reports,
               which keeps our numbers comparable with published BEIR tables.
               With binary judgements the two are identical.
    Recall@k = |relevant ∩ {d_1..d_k}| / |relevant|       (0 when none relevant)
    MRR@k    = 1 / (rank of the first relevant d_i, i <= k), else 0

:func:`evaluate_run` averages each metric over the queries of a run that have
at least one relevant document; a query missing from the run is not counted
(as in pytrec_eval), a query with an empty ranking scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

METRICS = ("ndcg@10", "recall@1", "recall@5", "recall@10", "recall@100", "mrr@10")


def _top_k(ranked_ids: Sequence[str], k: int) -> list[str]:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    seen: set[str] = set()
    top: list[str] = []
    for doc_id in ranked_ids:
        if doc_id not in seen:
            seen.add(doc_id)
            top.append(doc_id)
            if len(top) == k:
                break
    return top


def _dcg(gains: Sequence[int]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains) if g > 0)


def ndcg_at_k(ranked_ids: Sequence[str], relevances: Mapping[str, int], k: int) -> float:
    top = _top_k(ranked_ids, k)
    ideal = _dcg(sorted((r for r in relevances.values() if r > 0), reverse=True)[:k])
    if ideal == 0.0:
        return 0.0
    return _dcg([relevances.get(d, 0) for d in top]) / ideal


def recall_at_k(ranked_ids: Sequence[str], relevant_ids: Collection[str], k: int) -> float:
    top = _top_k(ranked_ids, k)
    if not relevant_ids:
        return 0.0
    relevant = set(relevant_ids)
    return sum(1 for d in top if d in relevant) / len(relevant)


def mrr_at_k(ranked_ids: Sequence[str], relevant_ids: Collection[str], k: int) -> float:
    relevant = set(relevant_ids)
    for rank, doc_id in enumerate(_top_k(ranked_ids, k), start=1):
        if doc_id in relevant:
            return 1.0 / rank
    return 0.0


def query_metrics(ranked_ids: Sequence[str], relevances: Mapping[str, int]) -> dict[str, float]:
    """The :data:`METRICS` of one query."""
    relevant = {d for d, r in relevances.items() if r > 0}
    return {
        "ndcg@10": ndcg_at_k(ranked_ids, relevances, 10),
        "recall@1": recall_at_k(ranked_ids, relevant, 1),
        "recall@5": recall_at_k(ranked_ids, relevant, 5),
        "recall@10": recall_at_k(ranked_ids, relevant, 10),
        "recall@100": recall_at_k(ranked_ids, relevant, 100),
        "mrr@10": mrr_at_k(ranked_ids, relevant, 10),
    }


def evaluate_run(
    run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]
) -> dict[str, float]:
    """Mean of :data:`METRICS` over the run's queries that have a relevant document.

    ``run`` maps a query id to its ranked corpus ids (best first); ``qrels`` maps
    a query id to ``{corpus id: grade}``.
    """
    totals = dict.fromkeys(METRICS, 0.0)
    counted = 0
    for query_id, ranked in run.items():
        relevances = qrels.get(query_id, {})
        if not any(r > 0 for r in relevances.values()):
            continue
        for name, value in query_metrics(ranked, relevances).items():
            totals[name] += value
        counted += 1
    if counted == 0:
        raise ValueError("no query of the run has a relevant document in the qrels; check that their query ids match")
    return {name: total / counted for name, total in totals.items()}
