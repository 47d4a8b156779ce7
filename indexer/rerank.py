"""An optional cross-encoder reranker for search results.

Set ``INDEXER_RERANKER`` to a sentence-transformers cross-encoder (a local
folder, or a hub id for users with a network, e.g.
``cross-encoder/ms-marco-MiniLM-L6-v2``): the best ``INDEXER_RERANK_DEPTH``
fused candidates are then scored as (query, passage) pairs, which reads both
texts together and so catches matches that neither BM25 nor a bi-encoder
ranks first. It costs one transformer pass per candidate, so the depth is kept
small. No reranker ships with the package, so it is off by default.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer.embedder import cuda_available

if TYPE_CHECKING:
    from indexer.index import Index


class Reranker:
    def __init__(self, model: str, *, batch_size: int = 32):
        from sentence_transformers import CrossEncoder

        self.name = model
        self.batch_size = batch_size
        self.model = CrossEncoder(model, device="cuda" if cuda_available() else "cpu")
        self._lock = threading.Lock()  # one forward pass at a time on the shared model

    def scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Relevance of each text to ``query`` (higher is better; the model's own scale)."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        with self._lock:
            out = self.model.predict([(query, t) for t in texts], batch_size=self.batch_size,
                                     show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)[:, -1]


def open_with_reranker(directory: str | os.PathLike[str], reranker: str | None) -> "Index":
    """The index at ``directory`` as built, with the cross-encoder ``reranker`` on top (None:
    as built): how the evaluations compare a reranker with the same index without one."""
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
