"""Document ids relative to the ingested root, and the one-time migration of an
index whose file documents were named by their path as given.

Since the index records ``doc_ids = relative`` in its metadata, a file's
document is named relative to the folder it was ingested from (see
:mod:`indexer.loaders`), and the real roots of every ingest are kept under
``document_roots``. An index without that mark was built when a file's id was
its path as given (``/srv/data/faq.jsonl#3``, ``.cache/demo/sample.jsonl#5``):
:func:`migrate` renames those documents on open.

What is renamed: documents the file loaders made (their ``format`` is a file
format and their source a path to a file of that format, ``#n`` for a record;
not the service's ``upload/…`` names, not documents given as records). Their
root is the deepest folder holding every such path, found separately for
absolute and relative paths; a source loses that folder, and an id equal to its
source follows it (a record's own id is kept). When a new id would collide
with another document's, that group's root moves up a folder until none does.

How: one SQLite transaction (``BEGIN IMMEDIATE``, foreign keys checked at
commit) renames documents and their chunks, stamps the renamed documents with a
new generation and logs their old ids as deleted at it, so the LSH mirror
replays the rename like any write (FAISS is keyed by chunk and needs nothing).
The old → new pairs are kept in ``doc_id_renames`` for evaluation sets and
records that name old ids. A process killed mid-way leaves the old state (the
transaction rolls back) or the new one; nothing else is written.
"""

from __future__ import annotations

import json
import posixpath
import re
import sqlite3
from collections.abc import Iterable

from indexer import store
from indexer.errors import IndexError_
from indexer.loaders import SUPPORTED_SUFFIXES

SCHEME_KEY, RELATIVE = "doc_ids", "relative"
ROOTS_KEY = "document_roots"
RENAMES_TABLE = """
CREATE TABLE IF NOT EXISTS doc_id_renames (old_id TEXT PRIMARY KEY, new_id TEXT NOT NULL, gen INTEGER NOT NULL)
"""
UPLOAD_PREFIX = "upload/"  # the service's public names of uploaded files: already relative
_RECORD = re.compile(r"^(?P<path>.+?)(?P<record>#\d+)?$")


def is_migrated(meta: dict[str, str]) -> bool:
    return meta.get(SCHEME_KEY) == RELATIVE


def new_index_meta() -> dict[str, str]:
    """The metadata a new index starts with: relative ids, no roots yet."""
    return {SCHEME_KEY: RELATIVE, ROOTS_KEY: "[]"}


def recorded_roots(meta: dict[str, str]) -> list[str]:
    return list(json.loads(meta.get(ROOTS_KEY, "[]")))


def record_roots(conn: sqlite3.Connection, roots: Iterable[str]) -> None:
    """Adds ``roots`` to those the index records (inside or outside a transaction)."""
    known = recorded_roots(store.get_meta(conn))
    merged = sorted(set(known) | set(roots))
    if merged != known:
        store.set_meta(conn, {ROOTS_KEY: json.dumps(merged)})


def _file_path(source: str, metadata: str) -> tuple[str, str] | None:
    """``(path, "#n" or "")`` when the loaders made this source from a file path, else None."""
    if source.startswith(UPLOAD_PREFIX):
        return None
    try:
        fmt = json.loads(metadata).get("format")
    except (ValueError, AttributeError):
        return None
    match = _RECORD.match(source)
    if not isinstance(fmt, str) or match is None:
        return None
    suffix = posixpath.splitext(match["path"])[1].lower()
    if suffix not in SUPPORTED_SUFFIXES or suffix[1:] != fmt.lower():
        return None
    return match["path"], match["record"] or ""


def _common_folder(paths: list[str]) -> str:
    """The deepest folder holding every path ("" for relative paths in different top folders)."""
    folders = [posixpath.dirname(p) for p in paths]
    common = posixpath.commonpath(folders) if folders else ""
    return "" if common in (".",) else common


def _strip(path: str, root: str) -> str:
    if not root:
        return path
    return posixpath.relpath(path, root) if root != "/" else path.lstrip("/")


def plan(rows: list[tuple[str, str, str]]) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """For ``(doc_id, source, metadata)`` rows: ``{old id: (new id, new source)}`` of the
    documents to rename, and the roots chosen (absolute, or relative to an unknown folder)."""
    groups: dict[bool, list[tuple[str, str, str, str]]] = {True: [], False: []}
    for doc_id, source, metadata in rows:
        found = _file_path(source, metadata)
        if found is not None:
            groups[found[0].startswith("/")].append((doc_id, source, *found))
    others = {doc_id for doc_id, _, _ in rows}
    for members in groups.values():
        others -= {m[0] for m in members}
    out: dict[str, tuple[str, str]] = {}
    roots: list[str] = []
    for absolute, members in groups.items():
        if not members:
            continue
        root = _common_folder([m[2] for m in members])
        while True:
            renamed = {}
            for doc_id, source, path, record in members:
                new_source = _strip(path, root) + record
                if new_source != source:
                    renamed[doc_id] = (new_source if doc_id == source else doc_id, new_source)
            kept = {m[0] for m in members} - set(renamed)
            new_ids = [new for new, _ in renamed.values()] + list(kept)
            if len(set(new_ids)) == len(new_ids) and not (set(new_ids) & others):
                break
            if root in ("", "/"):
                raise IndexError_("cannot rename this index's path ids without a collision; "
                                  "re-ingest its files into a new index")
            root = posixpath.dirname(root) if "/" in root.strip("/") else ("/" if absolute else "")
        others |= set(new_ids)
        out.update(renamed)
        if root:
            roots.append(root)
    return out, roots


def migrate(conn: sqlite3.Connection) -> int:
    """Renames path ids as the module describes, in one transaction; returns how many
    documents changed. Idempotent: an index already marked is left alone."""
    with store.transaction(conn):
        if is_migrated(store.get_meta(conn)):
            return 0
        conn.execute("PRAGMA defer_foreign_keys = ON")  # documents and chunks rename together
        conn.execute(RENAMES_TABLE)
        rows = conn.execute("SELECT doc_id, source, metadata FROM documents").fetchall()
        renames, roots = plan(rows)
        if renames:
            gen = store.next_generation(conn)
            for old, (new_id, new_source) in renames.items():
                if new_id == old:  # a record with its own id: only the source changes
                    conn.execute("UPDATE documents SET source = ? WHERE doc_id = ?", (new_source, old))
                    continue
                conn.execute("UPDATE documents SET doc_id = ?, source = ?, added_gen = ? WHERE doc_id = ?",
                             (new_id, new_source, gen, old))
                conn.execute("UPDATE chunks SET doc_id = ? WHERE doc_id = ?", (new_id, old))
                conn.execute("INSERT INTO doc_deletions(doc_id, gen) VALUES (?, ?)", (old, gen))
                conn.execute("INSERT OR REPLACE INTO doc_id_renames(old_id, new_id, gen) VALUES (?, ?, ?)",
                             (old, new_id, gen))
        store.set_meta(conn, {SCHEME_KEY: RELATIVE})
        record_roots(conn, roots)
    return len(renames)


def renamed_ids(conn: sqlite3.Connection) -> dict[str, str]:
    """Old id → new id of the documents :func:`migrate` renamed."""
    try:
        return dict(conn.execute("SELECT old_id, new_id FROM doc_id_renames").fetchall())
    except sqlite3.OperationalError:  # no such table: nothing was renamed
        return {}
