"""Contextual chunk headers: the text an index embeds and keyword-indexes for a
chunk when ``IndexSettings.chunk_titles`` is on.

A chunk cut from the middle of a document often never names what the document
is about ("wet AMD is treated with ..." under a title of "age-related macular
degeneration"). Indexing it as the document's title, a blank line and the chunk
lets both the vector and the BM25 ranking see that name. Only the indexed text
changes: the stored document, chunk offsets and search hits stay the chunk alone.

Ingestion (the vectors) and the store (the FTS5 row) both call
:func:`text_to_index`, so the two rankings index the same text. The reranker,
when set, still scores the chunk alone.

The title's tokens come on top of ``chunk_tokens``: the bundled MiniLM reads 256
tokens, so beside the default 200-token chunks a title of about 50 tokens fits;
a longer one pushes the chunk's last words out of its vector (not out of its
keyword row).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def one_line_title(value: object) -> str | None:
    """A string or number as a title on one line; None for anything else or blank."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return " ".join(str(value).split()) or None


def document_title(metadata: Mapping[str, object]) -> str | None:
    """The document's ``title`` metadata on one line, or None when it has none."""
    return one_line_title(metadata.get("title"))


def text_to_index(title: str | None, chunk: str) -> str:
    """What is embedded and keyword-indexed for ``chunk``: the title, a blank line and the chunk; the chunk alone without a title."""
    return f"{title}\n\n{chunk}" if title else chunk


def mismatch_message(path: Path, *, built_with: bool) -> str:
    """The error for asking an index built with (or without) chunk titles for
    the other: the setting changes every stored vector and keyword row, so an
    existing index can't switch it."""
    if built_with:
        return (f"the index at {path} was built with chunk titles on (chunk_titles = True); open it without "
                f"settings to keep them, or re-ingest into a new index folder to index chunks alone")
    return (f"the index at {path} was built without chunk titles; --chunk-titles (INDEXER_CHUNK_TITLES=1) "
            f"applies only when an index is created: re-ingest into a new index folder with it, "
            f"or leave it out to add to this index as built")
