"""The records an index hands out: :class:`Hit`, one stored chunk as search
returns it, and :class:`IngestReport`, what one ingest run did.

Plain data with no behaviour, so that every module of the package (the store,
the ingest pipeline, the index) can import them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hit:
    """A chunk of a stored document. From search, ``score`` is the score it was
    ranked by and ``dense_score``/``bm25_score`` the two rankings' own scores
    (None where that ranking did not find it); loaded from the store unranked,
    ``score`` is 0.0 and both are None."""

    chunk_id: int
    doc_id: str
    source: str
    start: int
    end: int
    text: str
    score: float
    dense_score: float | None
    bm25_score: float | None
    metadata: dict[str, object]
    tags: list[str]


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    chunks: int = 0
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """``(source, reason)`` for every file, record or document not stored."""

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0
