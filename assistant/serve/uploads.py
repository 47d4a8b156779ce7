"""Documents sent over HTTP: JSON bodies and uploaded files.

An uploaded file is written only inside the service's upload folder, under a
name reduced to safe characters (no folders, no ``..``), through a temporary
file and a rename, and is read back with the index's own loaders restricted to
that folder. Its document id is ``upload/<name>``: uploading a file of the same
name again updates that document. A file that gives no document (an unsupported
type, empty, not text) is deleted again.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from indexer import native
from indexer.loaders import Document, LoadProblem, load_paths

SAFE = re.compile(r"[^A-Za-z0-9._-]+")
PUBLIC_PREFIX = "upload/"


def safe_name(filename: str) -> str:
    """The last path component, with anything but letters, digits, ``.``, ``_`` and ``-`` turned into ``_``."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = SAFE.sub("_", base).lstrip(".")
    if not name or name in (".", ".."):
        raise ValueError(f"unusable file name {filename!r}")
    return name[:200]


def documents_from_json(payload: Any, body_type: type) -> list[Document]:
    """``{"documents": [...]}`` or one document object → Documents (clear errors on bad fields)."""
    items = payload.get("documents") if isinstance(payload, dict) and "documents" in payload else [payload]
    if not isinstance(items, list) or not items:
        raise ValueError("body must be a document object or {\"documents\": [ ... ]} with at least one")
    docs = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"documents[{n}] must be an object")
        unknown = set(item) - {f.name for f in dataclasses.fields(body_type)}
        if unknown:
            raise ValueError(f"documents[{n}] has unknown fields: {', '.join(sorted(unknown))}")
        if not isinstance(item.get("text"), str) or not item["text"].strip():
            raise ValueError(f"documents[{n}].text must be a non-empty string")
        for key, kind in (("id", str), ("source", str), ("metadata", dict), ("tags", list)):
            if item.get(key) is not None and not isinstance(item[key], kind):
                raise ValueError(f"documents[{n}].{key} must be a {kind.__name__}")
        # without an id, the content hash: stable across requests and restarts
        # (Python's hash() is salted per process)
        doc_id = item.get("id") or "api/" + native.content_hashes([item["text"]])[0]
        metadata = {"format": "api", **(item.get("metadata") or {})}
        if item.get("tags"):
            metadata["tags"] = list(map(str, item["tags"]))
        docs.append(Document(doc_id=str(doc_id), text=item["text"], source=str(item.get("source") or doc_id),
                             metadata=metadata))
    return docs


def save_upload(upload_dir: Path, filename: str, data: bytes) -> Path:
    upload_dir.mkdir(parents=True, exist_ok=True)
    target = upload_dir / safe_name(filename)
    fd, tmp = tempfile.mkstemp(dir=upload_dir, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def ingest_uploads(index: Any, upload_dir: Path, uploads: Sequence[tuple[str, bytes]], tags: Sequence[str] = (),
                   on_commit: Callable[[list[str]], None] | None = None, on_chunks: Callable[[int], None] | None = None):
    """Saves and ingests uploaded files; bad files are reported in the report's ``skipped``
    and deleted (a file that gave no document is not kept in the upload folder)."""
    problems: list[tuple[str, str]] = []
    items: list[Document | LoadProblem] = []
    for filename, data in uploads:
        try:
            path = save_upload(upload_dir, filename, data)
        except ValueError as exc:
            problems.append((filename, str(exc)))
            continue
        # loaded relative to the upload folder, the document is named "<name>"; clients
        # see "upload/<name>" and never the folder (problems name the path as given)
        loaded = len(items)
        for item in load_paths([path], max_file_bytes=index.settings.max_document_bytes, allowed_roots=[upload_dir],
                               root=upload_dir):
            if isinstance(item, Document):  # a record's own id is kept
                own_id = item.doc_id != item.source
                items.append(dataclasses.replace(item, doc_id=item.doc_id if own_id else PUBLIC_PREFIX + item.doc_id,
                                                 source=PUBLIC_PREFIX + item.source))
            else:
                problems.append((item.source.replace(str(path), PUBLIC_PREFIX + path.name, 1), item.reason))
        if len(items) == loaded:
            path.unlink(missing_ok=True)
    report = index.ingest_documents(items, tags=tags, on_commit=on_commit, on_chunks=on_chunks)
    report.skipped.extend(problems)
    return report
