"""The SQLite side of an index: documents, chunks (offsets and vectors), the
FTS5 keyword index, and a generation counter that orders every committed write.

SQLite is the source of truth. The FAISS and LSH files beside it are
snapshots that can be rebuilt from it: each write transaction bumps
``generation``, stamps added rows with it and logs deletions with it, so a
snapshot taken at generation G is brought up to date by replaying what
happened after G. A document is acknowledged when its transaction commits.

Every SQL statement of the package is here: the schema, the writes, the
replay queries that bring snapshots up to date, and the reads of a search
(keyword ranking, metadata filters, stored vectors and chunks).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.chunk_titles import text_to_index
from indexer.records import Hit
from indexer.search import SearchFilter, fts_query

SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    text TEXT NOT NULL,            -- normalized; chunk offsets index into it
    metadata TEXT NOT NULL,        -- JSON object
    tags TEXT NOT NULL,            -- JSON array
    added_gen INTEGER NOT NULL,
    ingested_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE INDEX IF NOT EXISTS documents_hash ON documents(content_hash);
CREATE INDEX IF NOT EXISTS documents_source ON documents(source);
CREATE TABLE IF NOT EXISTS chunks (
    -- the FAISS id; AUTOINCREMENT so a deleted chunk's id is never reused (HNSW
    -- cannot remove vectors: a reused id would inherit the old vector)
    chunk_id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    ord INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    vector BLOB NOT NULL,          -- float32 x dim, L2-normalised
    added_gen INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE INDEX IF NOT EXISTS chunks_gen ON chunks(added_gen);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, tokenize = 'porter unicode61');
CREATE TABLE IF NOT EXISTS chunk_deletions (chunk_id INTEGER PRIMARY KEY, gen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS doc_deletions (doc_id TEXT NOT NULL, gen INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS doc_deletions_gen ON doc_deletions(gen);
"""


@dataclass(frozen=True)
class NewDocument:
    """A document ready to store: normalized text, its chunks and their vectors."""

    doc_id: str
    source: str
    content_hash: str
    text: str
    metadata: dict[str, object]
    tags: list[str]
    spans: list[tuple[int, int]]
    vectors: np.ndarray
    title: str | None = None
    """Keyword-indexed with every chunk, as its vectors were embedded (``chunk_titles``); None: each chunk alone."""


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    uri = f"file:{path}?mode={'ro' if read_only else 'rwc'}"
    conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    if not read_only:
        # WAL: readers see the last committed state while a writer works;
        # synchronous=FULL makes a commit durable before it is acknowledged.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.executescript(SCHEMA)
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (including KeyboardInterrupt)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN ... COMMIT around reads: every statement inside sees the same committed state."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def get_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def set_meta(conn: sqlite3.Connection, values: dict[str, str]) -> None:
    conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", values.items())


def generation(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    return int(row[0]) if row else 0


def next_generation(conn: sqlite3.Connection) -> int:
    """Inside a write transaction: the generation this transaction commits as."""
    gen = generation(conn) + 1
    set_meta(conn, {"generation": str(gen)})
    return gen


def document_hash(conn: sqlite3.Connection, doc_id: str) -> str | None:
    row = conn.execute("SELECT content_hash FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
    return row[0] if row else None


def doc_with_hash(conn: sqlite3.Connection, content_hash: str) -> str | None:
    row = conn.execute("SELECT doc_id FROM documents WHERE content_hash = ? LIMIT 1", (content_hash,)).fetchone()
    return row[0] if row else None


def delete_document(conn: sqlite3.Connection, doc_id: str, gen: int) -> list[int]:
    """Removes a document, its chunks and keyword rows; logs the deletions. Returns its chunk ids."""
    ids = [r[0] for r in conn.execute("SELECT chunk_id FROM chunks WHERE doc_id = ?", (doc_id,))]
    if not ids and document_hash(conn, doc_id) is None:
        return []
    conn.executemany("DELETE FROM chunks_fts WHERE rowid = ?", ((i,) for i in ids))
    conn.executemany("INSERT OR REPLACE INTO chunk_deletions(chunk_id, gen) VALUES (?, ?)", ((i, gen) for i in ids))
    conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
    conn.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
    conn.execute("INSERT INTO doc_deletions(doc_id, gen) VALUES (?, ?)", (doc_id, gen))
    return ids


def insert_document(conn: sqlite3.Connection, doc: NewDocument, gen: int) -> list[int]:
    """Stores a document with its chunks; returns the new chunk ids."""
    conn.execute(
        "INSERT INTO documents(doc_id, source, content_hash, text, metadata, tags, added_gen)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (doc.doc_id, doc.source, doc.content_hash, doc.text, json.dumps(doc.metadata, ensure_ascii=False),
         json.dumps(doc.tags, ensure_ascii=False), gen),
    )
    ids = []
    for ord_, ((start, end), vec) in enumerate(zip(doc.spans, doc.vectors)):
        cur = conn.execute(
            'INSERT INTO chunks(doc_id, ord, start, "end", vector, added_gen) VALUES (?, ?, ?, ?, ?, ?)',
            (doc.doc_id, ord_, start, end, vec.astype(np.float32).tobytes(), gen),
        )
        chunk_id = int(cur.lastrowid or 0)
        conn.execute("INSERT INTO chunks_fts(rowid, text) VALUES (?, ?)",
                     (chunk_id, text_to_index(doc.title, doc.text[start:end])))
        ids.append(chunk_id)
    return ids


def vectors_added_after(conn: sqlite3.Connection, gen: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Chunk ids and vectors of chunks added after ``gen`` (still present)."""
    rows = conn.execute("SELECT chunk_id, vector FROM chunks WHERE added_gen > ? ORDER BY chunk_id", (gen,)).fetchall()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
    return ids, vecs


def chunks_deleted_after(conn: sqlite3.Connection, gen: int) -> np.ndarray:
    rows = conn.execute("SELECT chunk_id FROM chunk_deletions WHERE gen > ?", (gen,)).fetchall()
    return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))


def texts_added_after(conn: sqlite3.Connection, gen: int) -> list[tuple[str, str]]:
    """``(doc_id, normalized text)`` of documents added after ``gen`` (for the LSH index)."""
    return conn.execute("SELECT doc_id, text FROM documents WHERE added_gen > ?", (gen,)).fetchall()


def keyword_texts_after(conn: sqlite3.Connection, gen: int, batch: int) -> Iterator[list[tuple[int, str]]]:
    """``(chunk_id, keyword-indexed text)`` of chunks added after ``gen``, in batches (for the BM25 mirror)."""
    cur = conn.execute("SELECT c.chunk_id, f.text FROM chunks c JOIN chunks_fts f ON f.rowid = c.chunk_id"
                       " WHERE c.added_gen > ? ORDER BY c.chunk_id", (gen,))
    while rows := cur.fetchmany(batch):
        yield rows


def docs_deleted_after(conn: sqlite3.Connection, gen: int) -> list[str]:
    return [r[0] for r in conn.execute("SELECT doc_id FROM doc_deletions WHERE gen > ?", (gen,))]


def prune_logs(conn: sqlite3.Connection, up_to_gen: int) -> None:
    """Drops deletion records the snapshots at ``up_to_gen`` reflect, and notes
    it: a reader further behind must reload those snapshots instead of replaying."""
    conn.execute("DELETE FROM chunk_deletions WHERE gen <= ?", (up_to_gen,))
    conn.execute("DELETE FROM doc_deletions WHERE gen <= ?", (up_to_gen,))
    set_meta(conn, {"pruned_through": str(up_to_gen)})


def pruned_through(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'pruned_through'").fetchone()
    return int(row[0]) if row else 0


# ---- reads of a search -----------------------------------------------------------------


def load_chunks(conn: sqlite3.Connection, chunk_ids: Sequence[int]) -> dict[int, Hit]:
    """Committed chunks by id, unranked (ids not in the store are absent from the result)."""
    out: dict[int, Hit] = {}
    for batch in _batches(list(chunk_ids), 500):
        marks = ",".join("?" * len(batch))
        rows = conn.execute(
            f'SELECT c.chunk_id, c.doc_id, d.source, c.start, c."end", substr(d.text, c.start + 1, c."end" - c.start),'
            f" d.metadata, d.tags FROM chunks c JOIN documents d USING (doc_id) WHERE c.chunk_id IN ({marks})",
            batch,
        ).fetchall()
        for cid, doc_id, source, start, end, text, meta, tags in rows:
            out[cid] = Hit(cid, doc_id, source, start, end, text, 0.0, None, None, json.loads(meta), json.loads(tags))
    return out


def filter_clause(filt: SearchFilter) -> tuple[str, list[object]]:
    """A WHERE clause over ``documents d`` for ``filt``, and its parameters."""
    clauses: list[str] = []
    params: list[object] = []
    if filt.sources:
        parts = []
        for s in filt.sources:
            if s.endswith("*"):
                # not LIKE: it ignores ASCII case, and paths are case-sensitive
                parts.append("substr(d.source, 1, ?) = ?")
                params.extend([len(s) - 1, s[:-1]])
            else:
                parts.append("d.source = ?")
                params.append(s)
        clauses.append("(" + " OR ".join(parts) + ")")
    if filt.tags:
        marks = ",".join("?" * len(filt.tags))
        clauses.append(f"EXISTS (SELECT 1 FROM json_each(d.tags) WHERE json_each.value IN ({marks}))")
        params.extend(filt.tags)
    if filt.date_from:
        clauses.append("json_extract(d.metadata, '$.date') >= ?")
        params.append(filt.date_from)
    if filt.date_to:
        clauses.append("json_extract(d.metadata, '$.date') <= ?")
        params.append(filt.date_to)
    if filt.doc_ids:
        clauses.append(f"d.doc_id IN ({','.join('?' * len(filt.doc_ids))})")
        params.extend(filt.doc_ids)
    return (" AND ".join(clauses) or "1"), params


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
        where, params = filter_clause(filt)
        rows = conn.execute(
            "SELECT f.rowid, bm25(chunks_fts) AS s FROM chunks_fts f JOIN chunks c ON c.chunk_id = f.rowid"
            f" JOIN documents d ON d.doc_id = c.doc_id WHERE chunks_fts MATCH ? AND {where} ORDER BY s LIMIT ?",
            (match, *params, limit),
        ).fetchall()
    return [(int(r[0]), -float(r[1])) for r in rows]


def filtered_chunk_ids(conn: sqlite3.Connection, filt: SearchFilter, limit: int) -> list[int] | None:
    """Chunk ids passing ``filt``, or None when more than ``limit`` do (then the
    dense search over-fetches from FAISS and filters instead)."""
    where, params = filter_clause(filt)
    rows = conn.execute(
        f"SELECT c.chunk_id FROM chunks c JOIN documents d ON d.doc_id = c.doc_id WHERE {where} LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    return None if len(rows) > limit else [r[0] for r in rows]


def chunks_passing(conn: sqlite3.Connection, filt: SearchFilter, chunk_ids: Sequence[int]) -> set[int]:
    """Those of ``chunk_ids`` whose documents pass ``filt``."""
    if not chunk_ids:
        return set()
    where, params = filter_clause(filt)
    rows = conn.execute(
        f"SELECT c.chunk_id FROM chunks c JOIN documents d ON d.doc_id = c.doc_id"
        f" WHERE c.chunk_id IN ({','.join('?' * len(chunk_ids))}) AND {where}",
        [*chunk_ids, *params],
    ).fetchall()
    return {r[0] for r in rows}


def vectors_of(conn: sqlite3.Connection, chunk_ids: Sequence[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Chunk ids and stored vectors of those of ``chunk_ids`` still present."""
    found: dict[int, bytes] = {}
    for batch in _batches(list(chunk_ids), 500):
        marks = ",".join("?" * len(batch))
        found.update(conn.execute(f"SELECT chunk_id, vector FROM chunks WHERE chunk_id IN ({marks})", batch).fetchall())
    ids = np.fromiter(found.keys(), dtype=np.int64, count=len(found))
    vecs = np.frombuffer(b"".join(found.values()), dtype=np.float32).reshape(len(found), dim)
    return ids, vecs


# ---- listing -------------------------------------------------------------------------------


def list_documents(conn: sqlite3.Connection, *, limit: int, offset: int,
                   source_prefix: str | None) -> list[dict[str, object]]:
    """Stored documents, oldest first: id, source, chunk count, metadata, tags and length."""
    where, params = ("WHERE substr(d.source, 1, ?) = ?", [len(source_prefix), source_prefix]) if source_prefix else ("", [])
    rows = conn.execute(
        f"SELECT d.doc_id, d.source, (SELECT count(*) FROM chunks c WHERE c.doc_id = d.doc_id), d.metadata, d.tags,"
        f" length(d.text) FROM documents d {where} ORDER BY d.rowid LIMIT ? OFFSET ?", (*params, limit, offset)).fetchall()
    return [{"doc_id": r[0], "source": r[1], "chunks": r[2], "metadata": json.loads(r[3]), "tags": json.loads(r[4]),
             "characters": r[5]} for r in rows]


def counts(conn: sqlite3.Connection) -> tuple[int, int]:
    """``(documents, chunks)`` stored."""
    return conn.execute("SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)").fetchone()


def _batches(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
