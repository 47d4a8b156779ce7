"""The keyword (BM25) mirror of the SQLite store: a tantivy index in memory over
the same chunk texts as the FTS5 table, kept at one generation of the store
like the FAISS and LSH mirrors (:mod:`indexer.mirrors`).

Why: FTS5 scores every row that holds any query word (22 ms p50, 44 ms p95 at
100k chunks); tantivy's top-k skips blocks that cannot enter the top (block-max
WAND), 0.3 ms p50 on the same queries (bench/bm25_engines.py, BENCHMARKS.md).

It is never written to disk: it is built from ``chunks_fts`` the first time a
search needs it and brought up to date by replaying later commits, so a killed
process can never leave it disagreeing with SQLite. FTS5 stays the source of
truth (and the text this index is built from), and the fallback.

Words are split and normalised as FTS5's ``porter unicode61`` does, closely:
runs of letters and digits, lower-cased, diacritics folded, English-stemmed
(tantivy's Snowball English, where FTS5 has the original Porter stemmer).
The score is FTS5's BM25 (k1 = 1.2, b = 0.75 in both): tantivy's IDF is
Lucene's, ln(1 + (N - n + 0.5) / (n + 0.5)), so each query term is boosted by
FTS5's IDF, ln((N - n + 0.5) / (n + 0.5)) floored at 1e-6, over tantivy's. On
a small corpus the two IDFs rank differently; with the boost the rankings are
FTS5's (tests/indexer/test_keywords.py), and top-k stays block-max WAND.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterable, Sequence

import tantivy

from indexer import store
from indexer.search import SearchFilter, query_words

TOKENIZER = "chunk_words"
BUILD_BATCH = 20_000  # rows read from SQLite at a time while building
WRITER_HEAP = 50_000_000  # bytes tantivy buffers before it writes a segment (RAM here)


def _analyzer() -> tantivy.TextAnalyzer:
    return (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
            .filter(tantivy.Filter.lowercase())
            .filter(tantivy.Filter.ascii_fold())
            .filter(tantivy.Filter.stemmer("english"))
            .build())


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("text", stored=False, tokenizer_name=TOKENIZER, index_option="freq")
    builder.add_integer_field("chunk_id", stored=False, indexed=True, fast=True)
    return builder.build()


class KeywordIndex:
    """Chunk texts by chunk id, searchable by BM25; at store generation ``gen``.

    Writes (:meth:`apply`) are serialised by the caller (the index's write
    lock); searches may run from any thread at the same time: each uses the
    searcher of the last applied commit."""

    def __init__(self) -> None:
        self.schema = _schema()
        self._analyzer = _analyzer()
        self._index = tantivy.Index(self.schema)  # no path: in memory
        self._index.register_tokenizer(TOKENIZER, self._analyzer)
        self._index.config_reader("manual")  # a new searcher only when a commit is applied whole
        self._writer = self._index.writer(heap_size=WRITER_HEAP, num_threads=1)
        self._searcher = self._index.searcher()
        self._lock = threading.Lock()
        self.gen = 0

    @classmethod
    def build(cls, conn: sqlite3.Connection) -> "KeywordIndex":
        """Every chunk text of the store, at its committed generation (inside one read snapshot)."""
        index = cls()
        with store.read_snapshot(conn):
            gen = store.generation(conn)
            for rows in store.keyword_texts_after(conn, 0, BUILD_BATCH):
                index._add(rows)
        index._commit(gen)
        return index

    def apply(self, deleted: Iterable[int], added: Iterable[Sequence[tuple[int, str]]], gen: int) -> None:
        """Removes the ``deleted`` chunk ids, adds the ``added`` ``(chunk_id, text)`` rows
        (in batches), and makes the result searchable as generation ``gen``."""
        for chunk_id in deleted:
            self._writer.delete_documents_by_term("chunk_id", int(chunk_id))
        for rows in added:
            self._add(rows)
        self._commit(gen)

    def _add(self, rows: Sequence[tuple[int, str]]) -> None:
        for chunk_id, text in rows:
            self._writer.add_document(tantivy.Document.from_dict({"chunk_id": chunk_id, "text": text}, self.schema))

    def _commit(self, gen: int) -> None:
        self._writer.commit()
        self._index.reload()
        searcher = self._index.searcher()
        with self._lock:
            self._searcher, self.gen = searcher, gen

    @property
    def size(self) -> int:
        return int(self._searcher.num_docs)

    def chunk_ids(self) -> set[int]:
        """Every chunk id held (for checks; reads the whole index)."""
        searcher = self._searcher
        if searcher.num_docs == 0:
            return set()
        hits = searcher.search(tantivy.Query.all_query(), searcher.num_docs, count=False).hits
        return {int(i) for i in searcher.fast_field_values("chunk_id", [a for _, a in hits])}  # type: ignore[arg-type]

    def terms(self, query: str) -> list[str]:
        """The index terms of ``query``'s words (stopwords dropped as for FTS5), one per word occurrence."""
        return [t for w in query_words(query) for t in self._analyzer.analyze(w)]

    def search(self, query: str, limit: int, only: Sequence[int] | None = None) -> list[tuple[int, float]]:
        """``(chunk_id, bm25)`` best first, of chunks holding any of the query's words;
        with ``only``, of those chunk ids alone."""
        with self._lock:
            searcher = self._searcher
        n_docs = searcher.num_docs
        clauses = []
        for term in self.terms(query):  # a term twice counts twice, as two phrases do in FTS5
            n = searcher.doc_freq("text", term)
            if n:
                q = tantivy.Query.term_query(self.schema, "text", term, index_option="freq")
                clauses.append((tantivy.Occur.Should, tantivy.Query.boost_query(q, _fts5_idf(n_docs, n) / _idf(n_docs, n))))
        if not clauses:
            return []
        q = tantivy.Query.boolean_query(clauses)
        if only is not None:
            if not only:
                return []
            # score 0: the filter selects, BM25 alone ranks
            allowed = tantivy.Query.const_score_query(tantivy.Query.term_set_query(self.schema, "chunk_id", list(only)), 0.0)
            q = tantivy.Query.boolean_query([(tantivy.Occur.Must, q), (tantivy.Occur.Must, allowed)])
        hits = searcher.search(q, limit, count=False).hits
        ids = searcher.fast_field_values("chunk_id", [a for _, a in hits])
        return [(int(i), float(s)) for i, (s, _) in zip(ids, hits)]  # type: ignore[arg-type]


def _idf(n_docs: int, n: int) -> float:
    """tantivy's (and Lucene's) BM25 IDF of a term found in ``n`` of ``n_docs`` documents."""
    return math.log(1.0 + (n_docs - n + 0.5) / (n + 0.5))


def _fts5_idf(n_docs: int, n: int) -> float:
    """FTS5's: negative for terms in more than half the rows, which it floors at 1e-6."""
    return max(math.log((n_docs - n + 0.5) / (n + 0.5)), 1e-6)


def bm25_ranking(conn: sqlite3.Connection, keywords: KeywordIndex | None, query: str, limit: int,
                 filt: SearchFilter, exact_filter_limit: int) -> list[tuple[int, float]]:
    """``(chunk_id, score)`` best first: from ``keywords`` when given, else from FTS5.

    A filter that passes at most ``exact_filter_limit`` chunks restricts the
    keyword search to them; a larger one is applied to ten times ``limit``
    candidates, which is exact when ``limit`` of them pass (or when that many
    candidates were all there were); otherwise FTS5 answers, exact and slower."""
    if keywords is None:
        return store.bm25_ranking(conn, query, limit, filt)
    if filt.is_empty():
        return keywords.search(query, limit)
    allowed = store.filtered_chunk_ids(conn, filt, exact_filter_limit)
    if allowed is not None:
        return keywords.search(query, limit, only=allowed)
    found = keywords.search(query, 10 * limit)
    keep = store.chunks_passing(conn, filt, [c for c, _ in found])
    passing = [(c, s) for c, s in found if c in keep]
    if len(passing) >= limit or len(found) < 10 * limit:
        return passing[:limit]
    return store.bm25_ranking(conn, query, limit, filt)
