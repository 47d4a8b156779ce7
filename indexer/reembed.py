"""Re-embedding an index with another embedder (``indexer reembed``): after tuning one
(``indexer tune-embedder``), the stored vectors must all come from it, since a query is
embedded by the model the index records.

    report = reembed("my-index", "models/embedder/v2")

Crash safety, the one property that shapes this module: a kill at any point leaves the old
index or the new one, never a mix.

1. **Staging.** The new vectors are computed beside the old ones, into a staging table of the
   same SQLite file, a committed group at a time, while the index keeps serving and taking
   writes. A killed run resumes from the committed groups (the table records its target:
   model, fingerprint and dimension; another target starts afresh). Chunk ids are never
   reused and a chunk's text never changes, so a staged vector stays right for its chunk.
2. **The switch.** Under the index's writer lock, the chunks added meanwhile are embedded,
   then one transaction copies the staged vectors over the chunks' and records the new model,
   its fingerprint, its dimension and the generation from which vectors are its
   (``vectors.SINCE_KEY``). Before that commit the index is the old one, whole; after it, the
   new one, whole.
3. **The FAISS side** follows from SQLite: snapshots older than the switch are ignored, so the
   first open after it rebuilds the vectors from the store; this run then saves a snapshot.

The staging table's SQL lives here rather than in :mod:`indexer.store`: it belongs to this
operation only, and the store's statements are those every index runs.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from indexer import store
from indexer.chunk_titles import document_title, text_to_index
from indexer.embedder import Embedder
from indexer.index import DB_NAME, FINGERPRINT_KEY, Index
from indexer.memory import give_back_free_memory
from indexer.vectors import SINCE_KEY

log = logging.getLogger(__name__)

STAGING = "reembed_staging"
TARGET_KEY = "reembed_target"  # JSON of the staged vectors' model, fingerprint and dimension
GROUP = 512  # chunks embedded and committed together: what a kill can lose of the staging


@dataclass
class ReembedReport:
    index: str
    previous_model: str
    model: str
    fingerprint: str | None
    previous_dim: int
    dim: int
    chunks: int
    resumed: int  # chunks whose vectors a killed run had staged
    embedded: int
    seconds: float
    embed_seconds: float  # of which the model's encode calls

    @property
    def chunks_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "chunks_per_s": self.chunks_per_s}


Progress = Callable[[str, int, int], None]  # (stage, chunks done, chunks in all)


def reembed(directory: str | os.PathLike[str], model: str, *, batch_size: int = 64, force: bool = False,
            group: int = GROUP, progress: bool = True, on_progress: Progress | None = None) -> ReembedReport:
    """Re-embeds every chunk of the index at ``directory`` with ``model`` (a
    sentence-transformers folder or id) and switches the index to it atomically.
    Nothing is done when the index already records this model's fingerprint, unless ``force``.
    ``on_progress`` hears ``("staged", done, total)`` after each committed group and
    ``("switched", total, total)`` once the switch is durable; ``group`` chunks are
    embedded and committed together."""
    path = Path(directory)
    if group < 1:
        raise ValueError(f"group must be positive, got {group}")
    if not (path / DB_NAME).exists():
        raise FileNotFoundError(f"no index at {path} (no {DB_NAME})")
    started = time.perf_counter()
    embedder = Embedder(model, batch_size=batch_size)
    target = {"model": model, "fingerprint": embedder.fingerprint, "dim": embedder.dim}
    notify = on_progress or (lambda stage, done, total: None)
    with Index.open(path, create=False) as index:
        previous_model, previous_dim = index.settings.embedding_model, index.dim
        _check_fits(index, embedder)
        report = ReembedReport(str(path), previous_model, model, embedder.fingerprint, previous_dim, embedder.dim,
                               chunks=0, resumed=0, embedded=0, seconds=0.0, embed_seconds=0.0)
        if not force and embedder.fingerprint and embedder.fingerprint == index.embedder_fingerprint:
            log.info("the index at %s is already embedded by %s; nothing to do", path, model)
            report.chunks = int(index.stats()["chunks"])  # type: ignore[call-overload]
            return report
        conn = store.connect(path / DB_NAME)
        try:
            report.resumed = _open_staging(conn, target)
            with tqdm(desc="re-embed", unit="chunk", disable=not progress) as bar:
                stage = lambda: _stage(conn, embedder, index.settings.chunk_titles, group, report, bar, notify)  # noqa: E731
                stage()
                with index.writer():  # no other writer from here on: stage what came meanwhile, then switch
                    stage()
                    report.chunks = _switch(conn, target)
        finally:
            conn.close()
    notify("switched", report.chunks, report.chunks)
    with Index.open(path, create=False) as index, index.writer() as writer:
        writer.save_snapshots()  # the FAISS side was rebuilt from the store on open: keep it
    report.seconds = time.perf_counter() - started
    return report


def _check_fits(index: Index, embedder: Embedder) -> None:
    """The chunks were cut to ``chunk_tokens`` tokens; a model that reads fewer would embed
    a cut chunk, which no later query could find by its end."""
    if embedder.max_tokens < index.settings.chunk_tokens:
        raise ValueError(f"{embedder.name} reads at most {embedder.max_tokens} tokens, but the index at "
                         f"{index.directory} holds chunks of up to {index.settings.chunk_tokens}; ingest into "
                         f"a new index with INDEXER_EMBEDDING_MODEL={embedder.name} instead")


def _open_staging(conn: sqlite3.Connection, target: dict[str, object]) -> int:
    """Creates the staging table, or keeps a killed run's when it was for the same target;
    returns how many vectors it already holds."""
    with store.transaction(conn):
        staged_for = store.get_meta(conn).get(TARGET_KEY)
        if staged_for is not None and json.loads(staged_for) != target:
            conn.execute(f"DROP TABLE IF EXISTS {STAGING}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {STAGING} (chunk_id INTEGER PRIMARY KEY, vector BLOB NOT NULL)")
        store.set_meta(conn, {TARGET_KEY: json.dumps(target)})
        # staged vectors of chunks deleted since are of no use
        conn.execute(f"DELETE FROM {STAGING} WHERE chunk_id NOT IN (SELECT chunk_id FROM chunks)")
        return int(conn.execute(f"SELECT COUNT(*) FROM {STAGING}").fetchone()[0])


def _stage(conn: sqlite3.Connection, embedder: Embedder, chunk_titles: bool, group: int, report: ReembedReport,
           bar: tqdm, notify: Progress) -> None:
    """Embeds every chunk that has no staged vector yet, committing a group at a time."""
    while True:
        total = int(conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
        staged = int(conn.execute(f"SELECT COUNT(*) FROM {STAGING}").fetchone()[0])
        bar.total, bar.n = total, staged
        bar.refresh()
        rows = conn.execute(
            f'SELECT c.chunk_id, substr(d.text, c.start + 1, c."end" - c.start), d.metadata FROM chunks c '
            f"JOIN documents d USING (doc_id) WHERE c.chunk_id NOT IN (SELECT chunk_id FROM {STAGING}) "
            f"ORDER BY c.chunk_id LIMIT ?", (group,)).fetchall()
        if not rows:
            return
        texts = [text_to_index(document_title(json.loads(meta)) if chunk_titles else None, text)
                 for _, text, meta in rows]
        began = time.perf_counter()
        vectors = embedder.embed(texts)
        report.embed_seconds += time.perf_counter() - began
        give_back_free_memory()  # the encoder's batch buffers (see indexer.memory)
        with store.transaction(conn):
            conn.executemany(f"INSERT OR REPLACE INTO {STAGING} (chunk_id, vector) VALUES (?, ?)",
                             [(cid, np.ascontiguousarray(v, np.float32).tobytes())
                              for (cid, _, _), v in zip(rows, vectors)])
        report.embedded += len(rows)
        bar.update(len(rows))
        notify("staged", staged + len(rows), total)


def _switch(conn: sqlite3.Connection, target: dict[str, object]) -> int:
    """One transaction: every chunk's vector from the staging table, the index's model,
    fingerprint, dimension and vectors' generation; returns the chunk count."""
    with store.transaction(conn):
        chunks = int(conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
        missing = conn.execute(f"SELECT COUNT(*) FROM chunks WHERE chunk_id NOT IN "
                               f"(SELECT chunk_id FROM {STAGING})").fetchone()[0]
        if missing:  # cannot happen under the writer lock; a mix must never commit
            raise RuntimeError(f"{missing} chunks have no new vector; the index is unchanged")
        conn.execute(f"UPDATE chunks SET vector = (SELECT s.vector FROM {STAGING} s "
                     f"WHERE s.chunk_id = chunks.chunk_id)")
        gen = store.next_generation(conn)
        store.set_meta(conn, {"embedding_model": str(target["model"]), "dim": str(target["dim"]),
                              FINGERPRINT_KEY: str(target["fingerprint"] or ""), SINCE_KEY: str(gen)})
        conn.execute("DELETE FROM meta WHERE key = ?", (TARGET_KEY,))
        conn.execute(f"DROP TABLE {STAGING}")
    return chunks
