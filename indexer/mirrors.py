"""The in-memory mirrors of the SQLite store: the FAISS vectors, the LSH
index of document texts and the BM25 keyword index of chunk texts, each kept
at one generation of the store.

The FAISS and LSH mirrors load from the newest snapshot files at or below the
committed generation, are brought up to date by replaying the writes committed
after their snapshots (by this process or another), and are written back as
new snapshots. The keyword mirror has no snapshot: it is built from the store
when a search first needs it (:meth:`Mirrors.ensure_keywords`), then replays
commits like the others. Callers serialise access (the index's write lock);
searches read ``vectors`` and ``keywords`` concurrently, which both allow.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from indexer import native, snapshots, store
from indexer.errors import IndexMismatchError
from indexer.keywords import BUILD_BATCH, KeywordIndex
from indexer.search import SearchFilter
from indexer.settings import IndexSettings
from indexer.vectors import SINCE_KEY, VectorIndex

LSH_PREFIX, LSH_SUFFIX = "lsh", ".bin"
T = TypeVar("T")


class Mirrors:
    def __init__(self, directory: Path, settings: IndexSettings, dim: int, conn: sqlite3.Connection):
        self.directory = directory
        self.settings = settings
        self.dim = dim
        committed = store.generation(conn)
        self.vectors_since = _vectors_since(conn)
        self.vectors = self._load_vectors(committed)
        self.lsh, lsh_gen = self._load_lsh(committed)
        # each structure replays the writes its snapshot has not seen
        self._applied = {"vectors": self.vectors.gen, "lsh": lsh_gen}
        self.keywords: KeywordIndex | None = None  # built on first use
        self.catch_up(conn)

    @property
    def applied_gen(self) -> int:
        return min(self._applied.values())

    def catch_up(self, conn: sqlite3.Connection) -> None:
        """Applies every write committed after ``applied_gen``."""
        # one read snapshot: a commit by another process between these
        # reads would otherwise be applied now and again next time
        with store.read_snapshot(conn):
            self._apply_committed(conn)

    def ensure_keywords(self, conn: sqlite3.Connection) -> KeywordIndex:
        """The keyword mirror, built from the store first if it is not yet, at the
        generation of the other mirrors (caught up with them)."""
        self.catch_up(conn)
        while self.keywords is None:
            self.keywords = KeywordIndex.build(conn)
            self.catch_up(conn)  # commits between the two read snapshots (a prune among them drops it again)
        return self.keywords

    def reload_lsh(self, conn: sqlite3.Connection) -> None:
        """Back to the last LSH snapshot plus committed writes (after a failed batch)."""
        self.lsh, self._applied["lsh"] = self._load_lsh(store.generation(conn))
        self.catch_up(conn)

    def save(self, conn: sqlite3.Connection) -> None:
        """Writes the FAISS and LSH snapshots at the current generation and
        forgets deletion records they reflect."""
        self.catch_up(conn)
        gen = self.applied_gen
        self.vectors.save(self.directory, gen)
        snapshots.write_atomically(snapshots.path_for(self.directory, LSH_PREFIX, gen, LSH_SUFFIX),
                                   lambda tmp: self.lsh.save(tmp))
        snapshots.remove_older(self.directory, LSH_PREFIX, LSH_SUFFIX, gen)
        with store.transaction(conn):
            store.prune_logs(conn, gen)

    def _apply_committed(self, conn: sqlite3.Connection) -> None:
        gen = store.generation(conn)
        if gen <= self.applied_gen:
            return
        if _vectors_since(conn) != self.vectors_since:
            # the stored vectors are another embedder's now; this process's model and mirror are not
            raise IndexMismatchError(f"the index at {self.directory} was re-embedded by another process after "
                                     f"this one opened it; open it again")
        pruned = store.pruned_through(conn)
        if self.applied_gen < pruned:
            # deletions we have not applied were pruned: start from the snapshots
            self.vectors = self._load_vectors(gen)
            self.lsh, lsh_gen = self._load_lsh(gen)
            self._applied = {"vectors": self.vectors.gen, "lsh": lsh_gen}
        since = self._applied["vectors"]
        if since < gen:
            self.vectors.remove(store.chunks_deleted_after(conn, since))
            self.vectors.add(*store.vectors_added_after(conn, since, self.dim))
        since = self._applied["lsh"]
        if since < gen:
            gone = store.docs_deleted_after(conn, since)
            if gone:
                self.lsh.remove(gone)
            added = store.texts_added_after(conn, since)
            if added:
                self.lsh.insert([d for d, _ in added], [t for _, t in added])
        if self.keywords is not None and self.keywords.gen < gen:
            self._apply_to_keywords(conn, self.keywords, gen, pruned)
        self._applied = {"vectors": gen, "lsh": gen}

    def _apply_to_keywords(self, conn: sqlite3.Connection, keywords: KeywordIndex, gen: int, pruned: int) -> None:
        since = keywords.gen
        if since < pruned:  # some deletions are no longer logged: what it holds that the store lacks
            stored = store.filtered_chunk_ids(conn, SearchFilter(), 1 << 62) or []
            deleted: list[int] = sorted(keywords.chunk_ids() - set(stored))
        else:
            deleted = store.chunks_deleted_after(conn, since).tolist()
        try:
            keywords.apply(deleted, store.keyword_texts_after(conn, since, BUILD_BATCH), gen)
        except BaseException:
            self.keywords = None  # half-applied: rebuilt from the store when next needed
            raise

    def _load_vectors(self, max_gen: int) -> VectorIndex:
        return _retrying(lambda: VectorIndex.load(self.directory, self.dim, self.settings.vector_index, max_gen,
                                                  self.vectors_since))

    def _load_lsh(self, max_gen: int) -> tuple[native.LshIndex, int]:
        def load() -> tuple[native.LshIndex, int]:
            found = snapshots.latest(self.directory, LSH_PREFIX, LSH_SUFFIX, max_gen)
            if found is None:
                return native.LshIndex(threshold=self.settings.near_duplicate_threshold), 0
            gen, path = found
            return native.LshIndex.load(path), gen

        return _retrying(load)


def _vectors_since(conn: sqlite3.Connection) -> int:
    return int(store.get_meta(conn).get(SINCE_KEY, "0"))


def _retrying(load: Callable[[], T]) -> T:
    """A writer replaces a snapshot file and then removes the older one; a
    reader that listed the older one just before may find it gone: look again."""
    for attempt in range(5):
        try:
            return load()
        except (FileNotFoundError, native.DataIOError):
            if attempt == 4:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")
