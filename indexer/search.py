"""Hybrid retrieval pieces: the BM25 query over SQLite FTS5, metadata filters,
and the fusion of the dense and keyword rankings.

Fusion is by score by default ("relative score fusion"): each ranking's scores
are min-max scaled over the candidates and mixed, half and half unless set.
Reciprocal rank fusion (Cormack et al. 2009) is the other choice. On our
retrieval sets RRF let a much weaker ranking pull good results down (COVID-QA:
BM25 nDCG@10 0.669, dense 0.448, RRF 0.589), while score fusion kept the
strong ranking's confident top results (0.677); see BENCHMARKS.md."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

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

    def sql(self) -> tuple[str, list[object]]:
        """A WHERE clause over ``documents d`` and its parameters."""
        clauses: list[str] = []
        params: list[object] = []
        if self.sources:
            parts = []
            for s in self.sources:
                if s.endswith("*"):
                    # not LIKE: it ignores ASCII case, and paths are case-sensitive
                    parts.append("substr(d.source, 1, ?) = ?")
                    params.extend([len(s) - 1, s[:-1]])
                else:
                    parts.append("d.source = ?")
                    params.append(s)
            clauses.append("(" + " OR ".join(parts) + ")")
        if self.tags:
            marks = ",".join("?" * len(self.tags))
            clauses.append(f"EXISTS (SELECT 1 FROM json_each(d.tags) WHERE json_each.value IN ({marks}))")
            params.extend(self.tags)
        if self.date_from:
            clauses.append("json_extract(d.metadata, '$.date') >= ?")
            params.append(self.date_from)
        if self.date_to:
            clauses.append("json_extract(d.metadata, '$.date') <= ?")
            params.append(self.date_to)
        if self.doc_ids:
            clauses.append(f"d.doc_id IN ({','.join('?' * len(self.doc_ids))})")
            params.extend(self.doc_ids)
        return (" AND ".join(clauses) or "1"), params


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


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression: the query's words other than stopwords (all
    of them when nothing else is left), quoted, OR-ed (BM25 ranks chunks with
    more and rarer words first). None when the query has no words."""
    words = WORD.findall(text.lower())
    if not words:
        return None
    words = [w for w in words if w not in STOPWORDS] or words
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in dict.fromkeys(words))


def bm25_ranking(conn: sqlite3.Connection, query: str, limit: int, filt: SearchFilter) -> list[tuple[int, float]]:
    """``(chunk_id, score)`` best first; the score is FTS5's bm25 negated (higher is better)."""
    match = fts_query(query)
    if match is None:
        return []
    if filt.is_empty():
        rows = conn.execute(
            "SELECT rowid, bm25(chunks_fts) AS s FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY s LIMIT ?",
            (match, limit),
        ).fetchall()
    else:
        where, params = filt.sql()
        rows = conn.execute(
            "SELECT f.rowid, bm25(chunks_fts) AS s FROM chunks_fts f JOIN chunks c ON c.chunk_id = f.rowid"
            f" JOIN documents d ON d.doc_id = c.doc_id WHERE chunks_fts MATCH ? AND {where} ORDER BY s LIMIT ?",
            (match, *params, limit),
        ).fetchall()
    return [(int(r[0]), -float(r[1])) for r in rows]


def filtered_chunk_ids(conn: sqlite3.Connection, filt: SearchFilter, limit: int) -> list[int] | None:
    """Chunk ids passing ``filt``, or None when more than ``limit`` do (then the
    dense search over-fetches from FAISS and filters instead)."""
    where, params = filt.sql()
    rows = conn.execute(
        f"SELECT c.chunk_id FROM chunks c JOIN documents d ON d.doc_id = c.doc_id WHERE {where} LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    return None if len(rows) > limit else [r[0] for r in rows]


def chunks_passing(conn: sqlite3.Connection, filt: SearchFilter, chunk_ids: Sequence[int]) -> set[int]:
    """Those of ``chunk_ids`` whose documents pass ``filt``."""
    if not chunk_ids:
        return set()
    where, params = filt.sql()
    rows = conn.execute(
        f"SELECT c.chunk_id FROM chunks c JOIN documents d ON d.doc_id = c.doc_id"
        f" WHERE c.chunk_id IN ({','.join('?' * len(chunk_ids))}) AND {where}",
        [*chunk_ids, *params],
    ).fetchall()
    return {r[0] for r in rows}


def vectors_of(conn: sqlite3.Connection, chunk_ids: Sequence[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
    found: dict[int, bytes] = {}
    for i in range(0, len(chunk_ids), 500):
        batch = list(chunk_ids[i : i + 500])
        marks = ",".join("?" * len(batch))
        found.update(conn.execute(f"SELECT chunk_id, vector FROM chunks WHERE chunk_id IN ({marks})", batch).fetchall())
    ids = np.fromiter(found.keys(), dtype=np.int64, count=len(found))
    vecs = np.frombuffer(b"".join(found.values()), dtype=np.float32).reshape(len(found), dim)
    return ids, vecs


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

