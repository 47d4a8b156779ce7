"""Measures an index's search modes on a BEIR set.

The corpus is ingested once (one :class:`indexer.loaders.Document` per corpus
document); then every query is searched in each mode and the ranked corpus ids
are scored with :func:`indexer.evaluation.metrics.evaluate_run`.

The index needs only two methods::

    index.ingest_documents(docs: Iterable[Document]) -> object
    index.search(query: str, *, k: int = 10, mode: str = "hybrid") -> list[Hit]   # hit.doc_id, hit.score

A search returns chunks, so several hits may share a document; each document
keeps its best rank. ``k`` counts chunks, so a query may rank fewer than ``k``
distinct documents (and Recall@100 looks at those only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from indexer.evaluation.beir import BeirSet, take_queries
from indexer.evaluation.metrics import evaluate_run
from indexer.loaders import Document, MetaValue

MODES = ("dense", "bm25", "hybrid")
log = logging.getLogger(__name__)


class HitLike(Protocol):
    """What the runner reads of a search hit (an :class:`indexer.records.Hit` or a test's fake)."""

    @property
    def doc_id(self) -> str: ...

    @property
    def score(self) -> float: ...


class SearchIndex(Protocol):
    def ingest_documents(self, docs: Iterable[Document]) -> object: ...

    def search(self, query: str, *, k: int = 10, mode: str = "hybrid") -> Sequence[HitLike]: ...


def corpus_documents(beir: BeirSet) -> Iterator[Document]:
    """The corpus as Documents: the title, a blank line and the text when there is a title."""
    for doc in beir.corpus.values():
        text = f"{doc.title}\n\n{doc.text}" if doc.title else doc.text
        metadata: dict[str, MetaValue] = {"format": "beir", "beir_id": doc.id}
        if doc.title:
            metadata["title"] = doc.title
        yield Document(doc_id=doc.id, text=text, source=f"beir:{doc.id}", metadata=metadata)


def ranked_doc_ids(hits: Iterable[HitLike]) -> list[str]:
    """Document ids in the order of their best-ranked chunk."""
    return list(dict.fromkeys(hit.doc_id for hit in hits))


def search_run(
    index: SearchIndex, queries: Mapping[str, str], *, mode: str, k: int, progress: bool = False
) -> dict[str, list[str]]:
    """query id -> ranked corpus ids for one search mode."""
    items: Iterable[tuple[str, str]] = queries.items()
    if progress:
        from tqdm import tqdm

        items = tqdm(items, total=len(queries), desc=f"search ({mode})", unit="q")
    return {query_id: ranked_doc_ids(index.search(text, k=k, mode=mode)) for query_id, text in items}


def run_retrieval_eval(
    beir: BeirSet,
    index: SearchIndex,
    *,
    modes: Sequence[str] = MODES,
    k: int = 100,
    limit_queries: int | None = None,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """mode -> mean metrics over the set's judged queries (the first
    ``limit_queries`` of them when given). The whole corpus is ingested."""
    if not modes:
        raise ValueError("no search modes given; pass some of " + ", ".join(MODES))
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    evaluated = take_queries(beir, limit_queries)
    queries = {q: evaluated.queries[q] for q in evaluated.judged_queries()}
    if not queries:
        raise ValueError("the set has no query with a relevant document; check its qrels")
    report = index.ingest_documents(corpus_documents(beir))
    skipped = getattr(report, "skipped", None)
    if skipped:  # a relevant document not stored caps recall below 1
        log.warning("%d corpus documents were not stored (first: %s); their queries can't find them",
                    len(skipped), skipped[0])
    return {
        mode: evaluate_run(search_run(index, queries, mode=mode, k=k, progress=progress), evaluated.qrels)
        for mode in modes
    }
