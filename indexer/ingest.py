"""The ingestion pipeline: load → normalize (Rust) → exact and near-duplicate
check against what is indexed (Rust LSH) → chunk by tokens of the embedding
model (Rust) → embed in batches (each chunk under its document's title when
``chunk_titles`` is on) → store, one SQLite transaction per batch.

A document is acknowledged (``on_commit``) once its batch has committed; a
crash before that leaves the index as it was after the previous batch.

The pipeline reads and writes the index only through its write boundary,
:class:`indexer.writer.IndexWriter`, held for the whole run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from tqdm import tqdm

from indexer import native, store
from indexer.chunk_titles import document_title, text_to_index
from indexer.loaders import Document, LoadProblem
from indexer.memory import give_back_free_memory
from indexer.records import IngestReport
from indexer.writer import IndexWriter

# Documents per transaction. Larger batches let the embedder sort more chunks by
# length (less padding); smaller ones acknowledge sooner.
BATCH_DOCS = 128
# Chunks per embedding call: a large document (a 10 MB upload is ~13,000 chunks) is
# embedded in groups, so its progress can be reported and the embedder's working memory
# stays that of one group (with the freed memory given back after each, see indexer.memory).
EMBED_GROUP = 512
# A longer text is chunked a window at a time, cut at a paragraph (else a line, else a
# space) break: the tokenizer's offsets for a whole 2 MB text took 200 MB that the
# process kept; a window's take a few.
CHUNK_WINDOW_CHARS = 100_000


@dataclass
class _Accepted:
    doc: Document
    text: str
    content_hash: str
    replaces: bool


class Writable(Protocol):
    """What ingestion needs of an index (an :class:`indexer.index.Index`)."""

    def writer(self) -> AbstractContextManager[IndexWriter]: ...


def ingest_documents(index: Writable, items: Iterable[Document | LoadProblem], *, tags: Sequence[str] = (),
                     progress: bool = False, on_commit: Callable[[list[str]], None] | None = None,
                     on_chunks: Callable[[int], None] | None = None) -> IngestReport:
    """Stores ``items`` in batches, holding ``index.writer()`` for the whole run;
    the report's time includes waiting for another process's write. ``on_commit``
    gets the ids of each committed batch, ``on_chunks`` the number of chunks
    embedded after each group (before their batch commits)."""
    report = IngestReport()
    start = time.perf_counter()
    changed = False
    with index.writer() as writer:
        with tqdm(desc="ingest", unit="doc", disable=not progress) as bar:
            batch: list[Document] = []
            for item in items:
                if isinstance(item, LoadProblem):
                    report.skipped.append((item.source, item.reason))
                    continue
                batch.append(item)
                if len(batch) >= BATCH_DOCS:
                    changed |= _ingest_batch(writer, batch, tags, report, on_commit, on_chunks)
                    bar.update(len(batch))
                    bar.set_postfix(chunks=report.chunks, skipped=len(report.skipped))
                    batch = []
            if batch:
                changed |= _ingest_batch(writer, batch, tags, report, on_commit, on_chunks)
                bar.update(len(batch))
        if changed:
            writer.save_snapshots()
    give_back_free_memory()  # what storing the chunks and saving the snapshots freed
    report.seconds = time.perf_counter() - start
    return report


def _normalize(docs: list[Document], report: IngestReport) -> list[tuple[Document, str]]:
    try:
        return list(zip(docs, native.normalize([d.text for d in docs])))
    except native.DataError:
        out = []  # find the offending documents one by one
        for d in docs:
            try:
                out.append((d, native.normalize([d.text])[0]))
            except native.DataError as exc:
                report.skipped.append((d.source, f"invalid text: {exc}"))
        return out


def _classify(writer: IndexWriter, pairs: list[tuple[Document, str]], report: IngestReport) -> list[_Accepted]:
    """Drops unchanged documents and duplicates; adds the accepted ones to the LSH index."""
    hashes = native.content_hashes([t for _, t in pairs]) if pairs else []
    seen: dict[str, str] = {}
    accepted: dict[str, _Accepted] = {}
    for (doc, text), h in zip(pairs, hashes):
        if not text:
            report.skipped.append((doc.source, "empty after normalization"))
            continue
        existing = writer.document_hash(doc.doc_id)
        if existing == h:
            report.unchanged += 1
            continue
        twin = seen.get(h) or writer.doc_with_hash(h)
        if twin is not None and twin != doc.doc_id:
            report.exact_duplicates += 1
            report.skipped.append((doc.source, f"exact duplicate of {twin}"))
            continue
        if writer.settings.near_duplicates == "skip":
            matches = [(k, s) for k, s in writer.lsh.query([text])[0] if k != doc.doc_id]
            if matches:
                report.near_duplicates += 1
                report.skipped.append((doc.source, f"near duplicate of {matches[0][0]} (similarity {matches[0][1]:.2f})"))
                continue
        earlier = accepted.pop(doc.doc_id, None)
        if earlier is not None:  # the same id twice in one run: the later record wins
            seen.pop(earlier.content_hash, None)
            report.skipped.append((earlier.doc.source, f"superseded by a later record with id {doc.doc_id}"))
        writer.lsh.insert([doc.doc_id], [text])
        seen[h] = doc.doc_id
        accepted[doc.doc_id] = _Accepted(doc, text, h, existing is not None)
    return list(accepted.values())


def _tags_of(doc: Document, extra: Sequence[str]) -> list[str]:
    own = doc.metadata.get("tags")
    own_tags = [t.strip() for t in own.split(",")] if isinstance(own, str) else []
    return sorted({t for t in [*own_tags, *extra] if t})


def _chunk_in_windows(text: str, writer: IndexWriter, tokenizer) -> list[tuple[int, int]]:
    """``native.chunk`` of ``text``, a window of at most CHUNK_WINDOW_CHARS at a time."""
    spans: list[tuple[int, int]] = []
    start = 0
    while start < len(text):
        end, next_start = _window(text, start)
        window = native.chunk([text[start:end]], max_tokens=writer.settings.chunk_tokens,
                              overlap=writer.settings.chunk_overlap, tokenizer=tokenizer)[0]
        spans += [(start + s, start + e) for s, e in window]
        start = next_start
    return spans


def _window(text: str, start: int) -> tuple[int, int]:
    """Where the window from ``start`` ends, and where the next begins (after the break)."""
    limit = start + CHUNK_WINDOW_CHARS
    if limit >= len(text):
        return len(text), len(text)
    for sep in ("\n\n", "\n", " "):  # a break in the window's second half
        cut = text.rfind(sep, start + CHUNK_WINDOW_CHARS // 2, limit)
        if cut > start:
            return cut, cut + len(sep)
    return limit, limit


def _embed_in_groups(embedder, pieces: list[str], on_chunks: Callable[[int], None] | None):
    import numpy as np

    groups = []
    for start in range(0, len(pieces), EMBED_GROUP):
        groups.append(embedder.embed(pieces[start:start + EMBED_GROUP]))
        give_back_free_memory()  # else the group's freed buffers stay with the process
        if on_chunks is not None:
            on_chunks(len(groups[-1]))
    return np.concatenate(groups) if groups else embedder.embed([])


def _ingest_batch(writer: IndexWriter, docs: list[Document], tags: Sequence[str], report: IngestReport,
                  on_commit: Callable[[list[str]], None] | None, on_chunks: Callable[[int], None] | None) -> bool:
    try:
        accepted = _classify(writer, _normalize(docs, report), report)
        if not accepted:
            return False
        embedder = writer.embedder
        spans = [_chunk_in_windows(a.text, writer, embedder.tokenizer) for a in accepted]
        ready = []
        for a, doc_spans in zip(accepted, spans):
            if doc_spans:
                ready.append((a, doc_spans))
            else:
                writer.lsh.remove([a.doc.doc_id])
                report.skipped.append((a.doc.source, "no indexable text"))
        titles = [document_title(a.doc.metadata) if writer.settings.chunk_titles else None for a, _ in ready]
        pieces = [text_to_index(title, a.text[s:e]) for (a, doc_spans), title in zip(ready, titles) for s, e in doc_spans]
        vectors = _embed_in_groups(embedder, pieces, on_chunks)
        new_docs, offset = [], 0
        for (a, doc_spans), title in zip(ready, titles):
            n = len(doc_spans)
            new_docs.append(store.NewDocument(
                doc_id=a.doc.doc_id, source=a.doc.source, content_hash=a.content_hash, text=a.text,
                metadata=dict(a.doc.metadata), tags=_tags_of(a.doc, tags), spans=doc_spans,
                vectors=vectors[offset : offset + n], title=title,
            ))
            offset += n
        writer.commit(new_docs, replacing={a.doc.doc_id for a, _ in ready if a.replaces})
    except BaseException:
        # the LSH index may hold documents of a batch that never committed
        writer.discard_uncommitted()
        raise
    for a, nd in zip((a for a, _ in ready), new_docs):
        report.chunks += len(nd.spans)
        if a.replaces:
            report.updated += 1
        else:
            report.added += 1
    if on_commit is not None:
        on_commit([nd.doc_id for nd in new_docs])
    return bool(new_docs)

