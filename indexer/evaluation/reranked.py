"""Opening an index for an evaluation that compares retrieval with and without a reranker:
the same built index, with the cross-encoder set on top when one is named."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any


def open_with_reranker(directory: str | os.PathLike[str], reranker: str | None) -> Any:
    """The index at ``directory`` as built, with the cross-encoder ``reranker`` on top (None:
    as built): how the evaluations compare a reranker with the same index without one. The
    index module is imported here, when called, as the evaluation command's tests replace it."""
    from indexer.index import Index

    if not reranker:
        return Index.open(directory)
    from indexer import store
    from indexer.index import DB_NAME
    from indexer.settings import IndexSettings, settings_of_existing

    path = Path(directory)
    if not (path / DB_NAME).exists():
        return Index.open(path, dataclasses.replace(IndexSettings.from_env(), reranker=reranker))
    # the built settings from the metadata: opening the index to read them would load its vectors twice
    conn = store.connect(path / DB_NAME, read_only=True)
    try:
        built = settings_of_existing(path, store.get_meta(conn), None)
    finally:
        conn.close()
    return Index.open(path, dataclasses.replace(built, reranker=reranker))
