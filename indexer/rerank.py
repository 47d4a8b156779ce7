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

import threading
from collections.abc import Sequence

import numpy as np

from indexer.embedder import cuda_available


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
