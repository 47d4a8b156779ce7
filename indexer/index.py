"""A persistent hybrid index in one directory: ``index.sqlite`` (documents,
chunks, FTS5 keywords: the source of truth), ``vectors-<gen>.faiss`` and
``lsh-<gen>.bin`` (snapshots brought up to date from SQLite on open), and in
memory a BM25 index of the chunks built from SQLite on first search.

    with Index.open("my-index") as index:
        report = index.ingest(["docs/"], tags=["cardio"])
        for hit in index.search("what raises blood pressure?", k=5):
            print(hit.score, hit.doc_id, hit.text[:80])

One process writes at a time (a lock file); any number may search, each
seeing committed documents only, whole.

This module owns the :class:`Index` object: opening (and the settings check),
the one write boundary :meth:`Index.writer`, and hybrid search. SQL is in
:mod:`indexer.store`, the in-memory FAISS and LSH mirrors in
:mod:`indexer.mirrors`, the writer in :mod:`indexer.writer`, ingestion in
:mod:`indexer.ingest`, document ids (and renaming an older index's path ids on
open) in :mod:`indexer.doc_ids`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from indexer import doc_ids, ingest, keywords, store
from indexer.embedder import Embedder, check_embedder
from indexer.errors import IndexBusyError, IndexError_, IndexMismatchError
from indexer.loaders import Document, LoadProblem, document_roots, load_paths
from indexer.mirrors import Mirrors
from indexer.records import Hit, IngestReport
from indexer.rerank import Reranker
from indexer.search import SearchFilter, SearchMode, reciprocal_rank_fusion, score_fusion
from indexer.settings import IndexSettings, settings_of_existing
from indexer.writer import IndexWriter, WriterLock

# the records, errors and writer are importable from here too, beside the Index
__all__ = ["Hit", "Index", "IndexBusyError", "IndexError_", "IndexMismatchError", "IndexWriter", "IngestReport"]

log = logging.getLogger(__name__)

DB_NAME = "index.sqlite"
# the sha256 of the embedder folder that made the stored vectors (embedder.model_fingerprint);
# "" when it had no local folder, absent in an index made before it was recorded
FINGERPRINT_KEY = "embedding_model_hash"
EXACT_FILTER_LIMIT = 20_000  # filtered sets up to this size are searched exactly


class Index:
    def __init__(self, directory: Path, settings: IndexSettings, conn: sqlite3.Connection, dim: int):
        self.directory = directory
        self.settings = settings
        self.dim = dim
        self._conn = conn  # writer connection, used under _write_lock
        self._write_lock = threading.RLock()  # guards _conn and the mirrors
        self._readers = threading.local()
        self._embedder: Embedder | None = None
        self._embedder_lock = threading.Lock()
        self._writer_lock = WriterLock(directory)
        self.writer_lock_timeout = 30.0  # seconds to wait for another process's write
        self._executor: ThreadPoolExecutor | None = None  # a thread pool for hybrid search, made on first use
        self._reranker: Reranker | None = None  # the cross-encoder, loaded on first use when set
        self._mirrors = Mirrors(directory, settings, dim, conn)
        self.embedder_fingerprint = store.get_meta(conn).get(FINGERPRINT_KEY) or None

    # ---- opening -------------------------------------------------------------------

    @classmethod
    def open(cls, directory: str | os.PathLike[str], settings: IndexSettings | None = None, *,
             create: bool = True) -> "Index":
        """Opens (or creates) the index in ``directory``. ``settings`` None keeps
        the settings the index was built with; given settings must match them."""
        path = Path(directory)
        db = path / DB_NAME
        if not db.exists() and not create:
            raise FileNotFoundError(f"no index at {path} (no {DB_NAME}); create one with `indexer ingest`")
        path.mkdir(parents=True, exist_ok=True)
        conn = store.connect(db)
        embedder = None
        try:
            meta = store.get_meta(conn)
            if "embedding_model" in meta:
                settings = settings_of_existing(path, meta, settings)
                dim = int(meta["dim"])
                if not doc_ids.is_migrated(meta):
                    _migrate_doc_ids(path, conn)
            else:
                settings = settings or IndexSettings.from_env()
                embedder = Embedder(settings.embedding_model, batch_size=settings.embed_batch_size)
                dim = embedder.dim
                with store.transaction(conn):
                    store.set_meta(conn, {**settings.build_values(), "dim": str(dim),
                                          FINGERPRINT_KEY: embedder.fingerprint or "",
                                          "schema_version": store.SCHEMA_VERSION, "generation": "0",
                                          **doc_ids.new_index_meta()})
            index = cls(path, settings, conn, dim)
        except BaseException:
            conn.close()
            raise
        index._embedder = embedder  # a new index has loaded its model already
        return index

    @property
    def embedder(self) -> Embedder:
        with self._embedder_lock:
            if self._embedder is None:
                embedder = Embedder(self.settings.embedding_model, batch_size=self.settings.embed_batch_size)
                check_embedder(self.directory, embedder, self.dim, self.embedder_fingerprint)
                self._embedder = embedder
            return self._embedder

    def close(self) -> None:
        with self._write_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
            self._writer_lock.release()
            self._conn.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- catching up and writing ---------------------------------------------------------

    @property
    def applied_gen(self) -> int:
        """The generation of the store the FAISS and LSH mirrors reflect."""
        return self._mirrors.applied_gen

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = self._readers.conn = store.connect(self.directory / DB_NAME, read_only=True)
        return conn

    def _catch_up(self, keywords: bool = False) -> None:
        """Applies every write committed after ``applied_gen`` (by this or another process);
        with ``keywords``, to the BM25 mirror too, built first if need be."""
        with self._write_lock:
            self._mirrors.catch_up(self._conn)
            if keywords:
                self._mirrors.ensure_keywords(self._conn)

    @contextmanager
    def writer(self) -> Iterator[IndexWriter]:
        """The one way to write: holds this object's write lock and the
        writer lock file (kept until :meth:`close`; raises
        :class:`IndexBusyError` after ``writer_lock_timeout`` seconds), catches
        up with committed writes, and yields the writer for this block."""
        with self._write_lock:
            self._writer_lock.acquire(self.writer_lock_timeout)
            self._catch_up()
            yield IndexWriter(self._conn, self._mirrors, self.settings, lambda: self.embedder)

    def save_snapshots(self) -> None:
        """Writes the FAISS and LSH snapshots at the current generation and
        forgets deletion records they reflect."""
        with self._write_lock:
            self._mirrors.save(self._conn)

    def ingest(self, paths: Sequence[str | os.PathLike[str]], *, tags: Sequence[str] = (), progress: bool = False,
               text_field: str = "text", id_field: str = "id", allowed_roots: Sequence[str | os.PathLike[str]] | None = None,
               root: str | os.PathLike[str] | None = None, title_field: str | None = None, on_commit=None) -> IngestReport:
        """Loads files and folders (see :mod:`indexer.loaders`, also for ``title_field``; documents are
        named relative to ``root``, else to the folder given or a given file's parent) and ingests
        them; the real roots are recorded in the index's metadata."""
        items = load_paths(paths, text_field=text_field, id_field=id_field, root=root, title_field=title_field,
                           max_file_bytes=self.settings.max_document_bytes, allowed_roots=allowed_roots)
        with self.writer() as writer:
            writer.record_roots(document_roots(paths, root))
            return ingest.ingest_documents(self, items, tags=tags, progress=progress, on_commit=on_commit)

    def ingest_documents(self, docs: Iterable[Document | LoadProblem], *, tags: Sequence[str] = (),
                         progress: bool = False, on_commit=None, on_chunks=None) -> IngestReport:
        """Ingests documents (see :mod:`indexer.ingest`)."""
        return ingest.ingest_documents(self, docs, tags=tags, progress=progress, on_commit=on_commit,
                                       on_chunks=on_chunks)

    def delete(self, doc_id: str) -> bool:
        """Removes a document from SQLite, the keyword index, FAISS and the LSH index."""
        with self.writer() as writer:
            if not writer.delete(doc_id):
                return False
            writer.save_snapshots()
            return True

    # ---- reading -------------------------------------------------------------------------

    def search(self, query: str, *, k: int = 10, mode: SearchMode = "hybrid",
               filters: SearchFilter | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``query``: dense (FAISS), keyword (BM25) or
        both fused (by score, or by reciprocal rank; ``IndexSettings.fusion``); with a
        reranker set, the best candidates are reordered by it and scored with its score."""
        if mode not in ("hybrid", "dense", "bm25"):
            raise ValueError(f"mode must be hybrid, dense or bm25, got {mode!r}")
        if not 1 <= k <= 1000:
            raise ValueError(f"k must be in 1..1000, got {k}")
        filt = filters or SearchFilter()
        tantivy = mode != "dense" and self.settings.keyword_engine == "tantivy"
        # An ingest in this object holds the write lock for its whole run and
        # applies each commit itself; don't wait for it to catch up.
        if self._write_lock.acquire(blocking=False):
            try:
                self._catch_up(keywords=tantivy)
            finally:
                self._write_lock.release()
        mirror = self._mirrors.keywords if tantivy else None  # None (FTS5) until the first build
        depth = max(50, 4 * k)
        conn = self._reader()
        with store.read_snapshot(conn):  # one snapshot for every statement of this search
            keyword: list[tuple[int, float]] = []
            if mode == "hybrid" and filt.is_empty() and mirror is None:
                # BM25 needs no query vector: SQLite ranks on a worker while this
                # thread embeds the query and searches FAISS (all three release
                # the GIL; the unfiltered dense search does not touch the connection)
                future = self._pool().submit(store.bm25_ranking, conn, query, depth, filt)
                try:
                    query_vector = self.embedder.embed_query(query)
                    dense = self._dense(conn, query_vector, depth, filt)
                finally:
                    keyword = future.result()  # never leave the worker on the connection
            else:
                if mode != "dense":  # the in-memory BM25 takes well under a millisecond: no worker
                    keyword = keywords.bm25_ranking(conn, mirror, query, depth, filt, EXACT_FILTER_LIMIT)
                # hybrid embeds on one torch thread as above: two contended badly on a loaded machine
                embed = self.embedder.embed_query if mode == "hybrid" else lambda q: self.embedder.embed([q])
                query_vector = embed(query) if mode != "bm25" else None
                dense = self._dense(conn, query_vector, depth, filt) if mode != "bm25" else []
            chunks = store.load_chunks(conn, [c for c, _ in dense] + [c for c, _ in keyword])
            by_score = mode == "hybrid" and self.settings.fusion == "score"
            cosines = self._dense_scores(conn, query_vector, dense, keyword) if by_score else {}
        # vectors of uncommitted or deleted chunks are dropped here
        dense = [(c, s) for c, s in dense if c in chunks]
        keyword = [(c, s) for c, s in keyword if c in chunks]
        if by_score:
            fused = score_fusion(dense, keyword, cosines, self.settings.hybrid_dense_weight)
        else:  # with one ranking, fusion keeps its order: 1 / (RRF_K + rank) falls with rank
            fused = reciprocal_rank_fusion(dense, keyword)
        if self.settings.reranker:
            fused = fused[: max(k, self.settings.rerank_depth)]
            relevance = self.reranker.scores(query, [chunks[f.chunk_id].text for f in fused])
            for f, r in zip(fused, relevance.tolist()):
                f.extra["rerank"] = r
            fused.sort(key=lambda f: -float(f.extra["rerank"]))  # type: ignore[arg-type]
        hits = []
        for f in fused[:k]:
            score = f.score if mode == "hybrid" else (f.dense_score if mode == "dense" else f.bm25_score)
            if "rerank" in f.extra:
                score = f.extra["rerank"]  # type: ignore[assignment]
            hits.append(dataclasses.replace(chunks[f.chunk_id], score=float(score or 0.0),
                                            dense_score=f.dense_score, bm25_score=f.bm25_score))
        return hits

    def _dense_scores(self, conn: sqlite3.Connection, q: np.ndarray, dense: list[tuple[int, float]],
                      keyword: list[tuple[int, float]]) -> dict[int, float]:
        """Cosine of every candidate: FAISS's for its own, the stored vector's for those only BM25 found."""
        scores = dict(dense)
        missing = [c for c, _ in keyword if c not in scores]
        if missing:
            ids, vecs = store.vectors_of(conn, missing, self.dim)
            scores.update(zip(ids.tolist(), (vecs @ q[0]).tolist()))
        return scores

    @property
    def reranker(self) -> Reranker:
        with self._embedder_lock:
            if self._reranker is None:
                self._reranker = Reranker(self.settings.reranker)  # type: ignore[arg-type]
            return self._reranker

    def _pool(self) -> ThreadPoolExecutor:
        with self._embedder_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="index-search")
            return self._executor

    def _dense(self, conn: sqlite3.Connection, q: np.ndarray, depth: int, filt: SearchFilter) -> list[tuple[int, float]]:
        if not filt.is_empty():
            allowed = store.filtered_chunk_ids(conn, filt, EXACT_FILTER_LIMIT)
            if allowed is not None:  # small filtered set: exact scores over its vectors
                ids, vecs = store.vectors_of(conn, allowed, self.dim)
                scores = vecs @ q[0]
                order = np.argsort(-scores)[:depth]
                return [(int(ids[i]), float(scores[i])) for i in order]
            depth *= 10  # large filtered set: over-fetch, the join below filters
        scores, ids = self._mirrors.vectors.search(q, depth)
        best: dict[int, float] = {}  # one entry per id, whatever the vector index holds
        for i, s in zip(ids[0], scores[0]):
            if i >= 0 and int(i) not in best:
                best[int(i)] = float(s)
        found = list(best.items())
        if not filt.is_empty():
            keep = store.chunks_passing(conn, filt, [i for i, _ in found])
            found = [(i, s) for i, s in found if i in keep]
        return found

    def list_documents(self, *, limit: int = 100, offset: int = 0, source_prefix: str | None = None) -> list[dict[str, object]]:
        """Stored documents, oldest first: id, source, chunk count, metadata and tags."""
        return store.list_documents(self._reader(), limit=limit, offset=offset, source_prefix=source_prefix)

    def renamed_ids(self) -> dict[str, str]:
        """Old id → new id of the documents renamed when their path ids were made relative."""
        return doc_ids.renamed_ids(self._reader())

    def stats(self) -> dict[str, object]:
        conn = self._reader()
        docs, chunks = store.counts(conn)
        size = sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())
        return {
            "directory": str(self.directory), "documents": docs, "chunks": chunks,
            "generation": store.generation(conn), "vectors": self._mirrors.vectors.size, "dimension": self.dim,
            "embedding_model": self.settings.embedding_model, "embedding_model_hash": self.embedder_fingerprint,
            "vector_index": self.settings.vector_index,
            "chunk_tokens": self.settings.chunk_tokens, "chunk_overlap": self.settings.chunk_overlap,
            "chunk_titles": self.settings.chunk_titles,
            "disk_bytes": size, "document_roots": doc_ids.recorded_roots(store.get_meta(conn)),
        }


def _migrate_doc_ids(path: Path, conn: sqlite3.Connection) -> None:
    """Renames an older index's path ids (see :mod:`indexer.doc_ids`) under the writer lock."""
    lock = WriterLock(path)
    lock.acquire(timeout=30.0)
    try:
        renamed = doc_ids.migrate(conn)
    finally:
        lock.release()
    if renamed:
        log.info("index at %s: %d document ids made relative to their ingested root", path, renamed)

