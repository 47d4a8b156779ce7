"""A persistent hybrid index in one directory: ``index.sqlite`` (documents,
chunks, FTS5 keywords: the source of truth), ``vectors-<gen>.faiss`` and
``lsh-<gen>.bin`` (snapshots brought up to date from SQLite on open).

    with Index.open("my-index") as index:
        report = index.ingest(["docs/"], tags=["cardio"])
        for hit in index.search("what raises blood pressure?", k=5):
            print(hit.score, hit.doc_id, hit.text[:80])

One process writes at a time (a lock file); any number may search, each
seeing committed documents only, whole.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer import native, store
from indexer.search import (
    SearchFilter,
    SearchMode,
    bm25_ranking,
    chunks_passing,
    filtered_chunk_ids,
    reciprocal_rank_fusion,
    score_fusion,
    vectors_of,
)
from indexer.settings import IndexSettings
from indexer.vectors import VectorIndex

DB_NAME = "index.sqlite"
LOCK_NAME = "writer.lock"
LSH_PREFIX, LSH_SUFFIX = "lsh", ".bin"
EXACT_FILTER_LIMIT = 20_000  # filtered sets up to this size are searched exactly


class IndexError_(ValueError):
    """Base class of index errors (named to avoid shadowing the builtin)."""


class IndexMismatchError(IndexError_):
    """The index was built with other settings (model, chunking) than requested."""


class IndexBusyError(IndexError_):
    """Another process is writing to the index."""


@dataclass(frozen=True)
class Hit:
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


class Index:
    def __init__(self, directory: Path, settings: IndexSettings, conn: sqlite3.Connection, dim: int):
        self.directory = directory
        self.settings = settings
        self.dim = dim
        self._conn = conn  # writer connection, used under _write_lock
        self._write_lock = threading.RLock()
        self._readers = threading.local()
        self._embedder = None
        self._embedder_lock = threading.Lock()
        self._lock_file: int | None = None
        self.writer_lock_timeout = 30.0  # seconds to wait for another process's write
        self._executor = None  # a thread pool for hybrid search, made on first use
        self._reranker = None  # the cross-encoder, loaded on first use when set
        committed = store.generation(conn)
        self.vectors = self._load_vectors(committed)
        self.lsh, lsh_gen = self._load_lsh(committed)
        # each structure replays the writes its snapshot has not seen
        self._applied = {"vectors": self.vectors.gen, "lsh": lsh_gen}
        self._catch_up()

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
                settings = _settings_of_existing(path, meta, settings)
                dim = int(meta["dim"])
            else:
                from indexer.embedder import Embedder

                settings = settings or IndexSettings.from_env()
                embedder = Embedder(settings.embedding_model, batch_size=settings.embed_batch_size)
                dim = embedder.dim
                with store.transaction(conn):
                    store.set_meta(conn, {**settings.build_values(), "dim": str(dim),
                                          "schema_version": store.SCHEMA_VERSION, "generation": "0"})
            index = cls(path, settings, conn, dim)
        except BaseException:
            conn.close()
            raise
        index._embedder = embedder  # a new index has loaded its model already
        return index

    @property
    def embedder(self):
        with self._embedder_lock:
            if self._embedder is None:
                from indexer.embedder import Embedder

                self._embedder = Embedder(self.settings.embedding_model, batch_size=self.settings.embed_batch_size)
                if self._embedder.dim != self.dim:
                    raise IndexMismatchError(
                        f"model {self.settings.embedding_model} gives {self._embedder.dim}-d vectors; "
                        f"the index at {self.directory} holds {self.dim}-d vectors"
                    )
            return self._embedder

    def close(self) -> None:
        with self._write_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
            self._release_writer()
            self._conn.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- snapshots and catching up -----------------------------------------------------

    def _load_vectors(self, max_gen: int) -> VectorIndex:
        return _retrying(lambda: VectorIndex.load(self.directory, self.dim, self.settings.vector_index, max_gen))

    def _load_lsh(self, max_gen: int) -> tuple[native.LshIndex, int]:
        from indexer import snapshots

        def load() -> tuple[native.LshIndex, int]:
            found = snapshots.latest(self.directory, LSH_PREFIX, LSH_SUFFIX, max_gen)
            if found is None:
                return native.LshIndex(threshold=self.settings.near_duplicate_threshold), 0
            gen, path = found
            return native.LshIndex.load(path), gen

        return _retrying(load)

    def _reload_lsh(self) -> None:
        """Back to the last snapshot plus committed writes (after a failed batch)."""
        with self._write_lock:
            self.lsh, self._applied["lsh"] = self._load_lsh(store.generation(self._conn))
            self._catch_up()

    @property
    def applied_gen(self) -> int:
        return min(self._applied.values())

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = self._readers.conn = store.connect(self.directory / DB_NAME, read_only=True)
        return conn

    def _catch_up(self) -> None:
        """Applies every write committed after ``applied_gen`` (by this or another process)."""
        with self._write_lock:
            # one read snapshot: a commit by another process between these
            # reads would otherwise be applied now and again next time
            self._conn.execute("BEGIN")
            try:
                self._apply_committed()
            finally:
                self._conn.execute("COMMIT")

    def _apply_committed(self) -> None:
        gen = store.generation(self._conn)
        if gen <= self.applied_gen:
            return
        if self.applied_gen < store.pruned_through(self._conn):
            # deletions we have not applied were pruned: start from the snapshots
            self.vectors = self._load_vectors(gen)
            self.lsh, lsh_gen = self._load_lsh(gen)
            self._applied = {"vectors": self.vectors.gen, "lsh": lsh_gen}
        since = self._applied["vectors"]
        if since < gen:
            self.vectors.remove(store.chunks_deleted_after(self._conn, since))
            self.vectors.add(*store.vectors_added_after(self._conn, since, self.dim))
        since = self._applied["lsh"]
        if since < gen:
            gone = store.docs_deleted_after(self._conn, since)
            if gone:
                self.lsh.remove(gone)
            added = store.texts_added_after(self._conn, since)
            if added:
                self.lsh.insert([d for d, _ in added], [t for _, t in added])
        self._applied = {"vectors": gen, "lsh": gen}

    def save_snapshots(self) -> None:
        """Writes the FAISS and LSH snapshots at the current generation and
        forgets deletion records they reflect."""
        from indexer import snapshots

        with self._write_lock:
            self._catch_up()
            gen = self.applied_gen
            self.vectors.save(self.directory, gen)
            snapshots.write_atomically(snapshots.path_for(self.directory, LSH_PREFIX, gen, LSH_SUFFIX),
                                       lambda tmp: self.lsh.save(tmp))
            snapshots.remove_older(self.directory, LSH_PREFIX, LSH_SUFFIX, gen)
            with store.transaction(self._conn):
                store.prune_logs(self._conn, gen)

    # ---- writing -------------------------------------------------------------------------

    def _acquire_writer(self) -> None:
        if self._lock_file is not None:
            return
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.writer_lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise IndexBusyError(f"another process is writing to the index at {self.directory}") from None
                time.sleep(0.1)
        self._lock_file = fd

    def _release_writer(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            os.close(self._lock_file)
            self._lock_file = None

    def ingest(self, paths: Sequence[str | os.PathLike[str]], *, tags: Sequence[str] = (), progress: bool = False,
               text_field: str = "text", id_field: str = "id", allowed_roots: Sequence[str | os.PathLike[str]] | None = None,
               on_commit=None) -> IngestReport:
        """Loads files and folders (see :mod:`indexer.loaders`) and ingests them."""
        from indexer.ingest import ingest_documents
        from indexer.loaders import load_paths

        items = load_paths(paths, text_field=text_field, id_field=id_field,
                           max_file_bytes=self.settings.max_document_bytes, allowed_roots=allowed_roots)
        return ingest_documents(self, items, tags=tags, progress=progress, on_commit=on_commit)

    def ingest_documents(self, docs: Iterable, *, tags: Sequence[str] = (), progress: bool = False,
                         on_commit=None) -> IngestReport:
        from indexer.ingest import ingest_documents

        return ingest_documents(self, docs, tags=tags, progress=progress, on_commit=on_commit)

    def delete(self, doc_id: str) -> bool:
        """Removes a document from SQLite, the keyword index, FAISS and the LSH index."""
        with self._write_lock:
            self._acquire_writer()
            with store.transaction(self._conn):
                if store.document_hash(self._conn, doc_id) is None:
                    return False
                store.delete_document(self._conn, doc_id, store.next_generation(self._conn))
            self.save_snapshots()
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
        # An ingest in this object holds the write lock for its whole run and
        # applies each commit itself; don't wait for it to catch up.
        if self._write_lock.acquire(blocking=False):
            try:
                self._catch_up()
            finally:
                self._write_lock.release()
        depth = max(50, 4 * k)
        conn = self._reader()
        conn.execute("BEGIN")  # one snapshot for every statement of this search
        try:
            keyword: list[tuple[int, float]] = []
            if mode == "hybrid" and filt.is_empty():
                # BM25 needs no query vector: SQLite ranks on a worker while this
                # thread embeds the query and searches FAISS (all three release
                # the GIL; the unfiltered dense search does not touch the connection)
                future = self._pool().submit(bm25_ranking, conn, query, depth, filt)
                try:
                    query_vector = self.embedder.embed_query(query)
                    dense = self._dense(conn, query_vector, depth, filt)
                finally:
                    keyword = future.result()  # never leave the worker on the connection
            else:
                query_vector = self.embedder.embed([query]) if mode != "bm25" else None
                dense = self._dense(conn, query_vector, depth, filt) if mode != "bm25" else []
                keyword = bm25_ranking(conn, query, depth, filt) if mode != "dense" else []
            chunks = store.load_chunks(conn, [c for c, _ in dense] + [c for c, _ in keyword])
            by_score = mode == "hybrid" and self.settings.fusion == "score"
            cosines = self._dense_scores(conn, query_vector, dense, keyword) if by_score else {}
        finally:
            conn.execute("COMMIT")
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
            c = chunks[f.chunk_id]
            score = f.score if mode == "hybrid" else (f.dense_score if mode == "dense" else f.bm25_score)
            if "rerank" in f.extra:
                score = f.extra["rerank"]  # type: ignore[assignment]
            hits.append(Hit(c.chunk_id, c.doc_id, c.source, c.start, c.end, c.text, float(score or 0.0),
                            f.dense_score, f.bm25_score, c.metadata, c.tags))
        return hits

    def _dense_scores(self, conn: sqlite3.Connection, q: np.ndarray, dense: list[tuple[int, float]],
                      keyword: list[tuple[int, float]]) -> dict[int, float]:
        """Cosine of every candidate: FAISS's for its own, the stored vector's for those only BM25 found."""
        scores = dict(dense)
        missing = [c for c, _ in keyword if c not in scores]
        if missing:
            ids, vecs = vectors_of(conn, missing, self.dim)
            scores.update(zip(ids.tolist(), (vecs @ q[0]).tolist()))
        return scores

    @property
    def reranker(self):
        with self._embedder_lock:
            if self._reranker is None:
                from indexer.rerank import Reranker

                self._reranker = Reranker(self.settings.reranker)  # type: ignore[arg-type]
            return self._reranker

    def _pool(self):
        with self._embedder_lock:
            if self._executor is None:
                from concurrent.futures import ThreadPoolExecutor

                self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="index-search")
            return self._executor

    def _dense(self, conn: sqlite3.Connection, q: np.ndarray, depth: int, filt: SearchFilter) -> list[tuple[int, float]]:
        if not filt.is_empty():
            allowed = filtered_chunk_ids(conn, filt, EXACT_FILTER_LIMIT)
            if allowed is not None:  # small filtered set: exact scores over its vectors
                ids, vecs = vectors_of(conn, allowed, self.dim)
                scores = vecs @ q[0]
                order = np.argsort(-scores)[:depth]
                return [(int(ids[i]), float(scores[i])) for i in order]
            depth *= 10  # large filtered set: over-fetch, the join below filters
        scores, ids = self.vectors.search(q, depth)
        best: dict[int, float] = {}  # one entry per id, whatever the vector index holds
        for i, s in zip(ids[0], scores[0]):
            if i >= 0 and int(i) not in best:
                best[int(i)] = float(s)
        found = list(best.items())
        if not filt.is_empty():
            keep = chunks_passing(conn, filt, [i for i, _ in found])
            found = [(i, s) for i, s in found if i in keep]
        return found

    def list_documents(self, *, limit: int = 100, offset: int = 0, source_prefix: str | None = None) -> list[dict[str, object]]:
        """Stored documents, oldest first: id, source, chunk count, metadata and tags."""
        conn = self._reader()
        where, params = ("WHERE substr(d.source, 1, ?) = ?", [len(source_prefix), source_prefix]) if source_prefix else ("", [])
        rows = conn.execute(
            f"SELECT d.doc_id, d.source, (SELECT count(*) FROM chunks c WHERE c.doc_id = d.doc_id), d.metadata, d.tags,"
            f" length(d.text) FROM documents d {where} ORDER BY d.rowid LIMIT ? OFFSET ?", (*params, limit, offset)).fetchall()
        return [{"doc_id": r[0], "source": r[1], "chunks": r[2], "metadata": json.loads(r[3]), "tags": json.loads(r[4]),
                 "characters": r[5]} for r in rows]

    def stats(self) -> dict[str, object]:
        conn = self._reader()
        docs = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
        chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        size = sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())
        return {
            "directory": str(self.directory), "documents": docs, "chunks": chunks,
            "generation": store.generation(conn), "vectors": self.vectors.size, "dimension": self.dim,
            "embedding_model": self.settings.embedding_model, "vector_index": self.settings.vector_index,
            "chunk_tokens": self.settings.chunk_tokens, "chunk_overlap": self.settings.chunk_overlap,
            "disk_bytes": size,
        }


def _retrying(load):
    """A writer replaces a snapshot file and then removes the older one; a
    reader that listed the older one just before may find it gone: look again."""
    for attempt in range(5):
        try:
            return load()
        except (FileNotFoundError, native.DataIOError):
            if attempt == 4:
                raise
            time.sleep(0.05)


def _settings_of_existing(path: Path, meta: dict[str, str], requested: IndexSettings | None) -> IndexSettings:
    # the build settings come from the index; the others (fusion, batch sizes ...) from the environment
    built = dataclasses.replace(
        IndexSettings.from_env(), embedding_model=meta["embedding_model"], chunk_tokens=int(meta["chunk_tokens"]),
        chunk_overlap=int(meta["chunk_overlap"]), vector_index=meta["vector_index"],  # type: ignore[arg-type]
    )
    if requested is None:
        return built
    for key in IndexSettings.BUILD_KEYS:
        want, have = str(getattr(requested, key)), meta[key]
        if want != have:
            flag = "--" + key.replace("_", "-")
            raise IndexMismatchError(
                f"the index at {path} was built with {key} = {have}, not {want}; "
                f"re-ingest into a new index, or pass {flag} {have}"
            )
    return requested
