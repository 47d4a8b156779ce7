"""The write boundary of an index: :class:`IndexWriter`, the one object
through which documents are stored and deleted, and :class:`WriterLock`, the
lock file that lets one process write at a time.

An :class:`IndexWriter` comes from ``Index.writer()``, which holds the index's
in-process write lock and the writer lock file and has caught up with every
committed write; it is valid inside that ``with`` block only. Each commit is
one SQLite transaction, applied to the in-memory FAISS and LSH mirrors
(:mod:`indexer.mirrors`) as soon as it is durable.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from indexer import doc_ids, native, store
from indexer.embedder import Embedder
from indexer.errors import IndexBusyError
from indexer.mirrors import Mirrors
from indexer.settings import IndexSettings

LOCK_NAME = "writer.lock"


class WriterLock:
    """An exclusive ``flock`` on ``writer.lock`` in the index directory. Once
    acquired it is held until :meth:`release` (the index's close), so the
    process that wrote last keeps the right to write."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._fd: int | None = None

    def acquire(self, timeout: float) -> None:
        """Waits up to ``timeout`` seconds for another process to release it."""
        if self._fd is not None:
            return
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise IndexBusyError(f"another process is writing to the index at {self.directory}") from None
                time.sleep(0.1)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class IndexWriter:
    """Reads what a write must check (stored hashes, the LSH index) and makes
    the writes. Made by ``Index.writer()``; not for use outside its block."""

    def __init__(self, conn: sqlite3.Connection, mirrors: Mirrors, settings: IndexSettings,
                 embedder: Callable[[], Embedder]):
        self._conn = conn
        self._mirrors = mirrors
        self._embedder = embedder
        self.settings = settings

    @property
    def embedder(self) -> Embedder:
        """The index's embedder, loaded on first use."""
        return self._embedder()

    @property
    def lsh(self) -> native.LshIndex:
        """The near-duplicate index of committed documents, plus those a batch
        being prepared has inserted (see :meth:`discard_uncommitted`)."""
        return self._mirrors.lsh

    def document_hash(self, doc_id: str) -> str | None:
        """The content hash stored for ``doc_id``; None when it is not stored."""
        return store.document_hash(self._conn, doc_id)

    def doc_with_hash(self, content_hash: str) -> str | None:
        """A stored document with this content hash, if any."""
        return store.doc_with_hash(self._conn, content_hash)

    def commit(self, docs: Sequence[store.NewDocument], replacing: Collection[str] = ()) -> None:
        """Stores ``docs`` in one transaction (one generation), first deleting
        the stored versions of those whose ids are in ``replacing``; then
        applies the commit to the FAISS and LSH mirrors."""
        with store.transaction(self._conn):
            gen = store.next_generation(self._conn)
            for doc in docs:
                if doc.doc_id in replacing:
                    store.delete_document(self._conn, doc.doc_id, gen)
                store.insert_document(self._conn, doc, gen)
        self._mirrors.catch_up(self._conn)

    def delete(self, doc_id: str) -> bool:
        """Removes a document in one transaction and applies that to the
        mirrors; False when it is not stored."""
        with store.transaction(self._conn):
            if store.document_hash(self._conn, doc_id) is None:
                return False
            store.delete_document(self._conn, doc_id, store.next_generation(self._conn))
        self._mirrors.catch_up(self._conn)
        return True

    def record_roots(self, roots: Sequence[str]) -> None:
        """Adds the real folders an ingest names its documents under to the index's metadata."""
        with store.transaction(self._conn):
            doc_ids.record_roots(self._conn, roots)

    def discard_uncommitted(self) -> None:
        """Puts the LSH index back to the committed documents: after a batch
        that inserted into it failed to commit."""
        self._mirrors.reload_lsh(self._conn)

    def save_snapshots(self) -> None:
        """Writes the FAISS and LSH snapshots at the current generation and
        forgets the deletion records they reflect."""
        self._mirrors.save(self._conn)
