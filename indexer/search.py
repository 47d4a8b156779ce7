"""The pure parts of hybrid retrieval: search modes, the metadata filter
record, the keyword query built from a question, and the fusion of the dense
and keyword rankings. The SQL that runs a filter or a keyword query is in
:mod:`indexer.store`.

Fusion is by score by default ("relative score fusion"): each ranking's scores
are min-max scaled over the candidates and mixed, half and half unless set.
Reciprocal rank fusion (Cormack et al. 2009) is the other choice. On our
retrieval sets RRF let a much weaker ranking pull good results down (COVID-QA:
BM25 nDCG@10 0.669, dense 0.448, RRF 0.589), while score fusion kept the
strong ranking's confident top results (0.677); see BENCHMARKS.md."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

SearchMode = Literal["hybrid", "dense", "bm25"]
FusionMethod = Literal["score", "rrf"]
RRF_K = 60  # Cormack et al. 2009: robust across collections
WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class SearchFilter:
    """Metadata filters; all given conditions must hold."""

    sources: tuple[str, ...] = ()
    """Exact sources, or prefixes ending in ``*`` (e.g. ``docs/cardio/*``)."""
    tags: tuple[str, ...] = ()
    """At least one of these tags."""
    date_from: str | None = None
    """ISO dates compared with the documents' ``date`` metadata field."""
    date_to: str | None = None
    doc_ids: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.sources or self.tags or self.date_from or self.date_to or self.doc_ids)

    @classmethod
    def parse(cls, items: Sequence[str]) -> "SearchFilter":
        """From ``key=value`` strings: source=, tag=, date_from=, date_to=, doc_id= (repeatable)."""
        values: dict[str, list[str]] = {"source": [], "tag": [], "doc_id": [], "date_from": [], "date_to": []}
        for item in items:
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in values:
                raise ValueError(f"filter {item!r} must be key=value with key in {sorted(values)}")
            values[key].append(value.strip())
        return cls(
            sources=tuple(values["source"]), tags=tuple(values["tag"]), doc_ids=tuple(values["doc_id"]),
            date_from=values["date_from"][-1] if values["date_from"] else None,
            date_to=values["date_to"][-1] if values["date_to"] else None,
        )


# Function words that match most chunks: scoring every one of their postings
# made BM25 slow at scale while adding nothing to the ranking.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves
""".split())


def query_words(text: str) -> list[str]:
    """The words a keyword search looks for: the query's words other than
    stopwords (all of them when nothing else is left), lower-cased, each once."""
    words = WORD.findall(text.lower())
    return list(dict.fromkeys([w for w in words if w not in STOPWORDS] or words))


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression: the :func:`query_words`, quoted, OR-ed (BM25
    ranks chunks with more and rarer words first). None when the query has no words."""
    words = query_words(text)
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words) if words else None


@dataclass
class Fused:
    chunk_id: int
    score: float
    dense_score: float | None = None
    bm25_score: float | None = None
    dense_rank: int | None = None
    bm25_rank: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


def _min_max(scores: dict[int, float]) -> dict[int, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high <= low:
        return dict.fromkeys(scores, 1.0)
    return {c: (s - low) / (high - low) for c, s in scores.items()}


def score_fusion(dense: list[tuple[int, float]], bm25: list[tuple[int, float]],
                 dense_scores: dict[int, float], dense_weight: float = 0.5) -> list[Fused]:
    """Each list best first. ``dense_scores`` holds the cosine of every
    candidate (those only BM25 found included), so both sides are scored over
    the same set; a candidate BM25 did not return gets BM25's floor, 0.
    Fused score = w * scaled dense + (1 - w) * scaled BM25, in [0, 1]."""
    fused: dict[int, Fused] = {}
    for rank, (cid, score) in enumerate(dense, start=1):
        fused[cid] = Fused(cid, 0.0, dense_score=score, dense_rank=rank)
    for rank, (cid, score) in enumerate(bm25, start=1):
        f = fused.setdefault(cid, Fused(cid, 0.0))
        f.bm25_score, f.bm25_rank = score, rank
        if f.dense_score is None and cid in dense_scores:
            f.dense_score = dense_scores[cid]
    dense_scaled = _min_max({c: f.dense_score for c, f in fused.items() if f.dense_score is not None})
    bm25_scaled = _min_max(dict(bm25))
    for cid, f in fused.items():
        f.score = dense_weight * dense_scaled.get(cid, 0.0) + (1.0 - dense_weight) * bm25_scaled.get(cid, 0.0)
    return sorted(fused.values(), key=lambda f: (-f.score, f.chunk_id))


def reciprocal_rank_fusion(dense: list[tuple[int, float]], bm25: list[tuple[int, float]]) -> list[Fused]:
    """Each list best first; fused score = sum of 1 / (RRF_K + rank), rank from 1."""
    fused: dict[int, Fused] = {}
    for rank, (cid, score) in enumerate(dense, start=1):
        f = fused.setdefault(cid, Fused(cid, 0.0))
        f.score += 1.0 / (RRF_K + rank)
        f.dense_score, f.dense_rank = score, rank
    for rank, (cid, score) in enumerate(bm25, start=1):
        f = fused.setdefault(cid, Fused(cid, 0.0))
        f.score += 1.0 / (RRF_K + rank)
        f.bm25_score, f.bm25_rank = score, rank
    return sorted(fused.values(), key=lambda f: (-f.score, f.chunk_id))

