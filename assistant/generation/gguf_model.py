"""One GGUF model in llama.cpp (through llama-cpp-python's bindings), with one context whose
key/value cache several sequences share: the engine under :mod:`.gguf_backend`.

    model = GGUFModel(Path("SmolLM2-135M-Instruct.Q8_0.gguf"), threads=2)
    ids = model.tokenize("<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n")
    seq = model.take_sequence()
    logits = model.decode([(seq, pos, token, pos == len(ids) - 1) for pos, token in enumerate(ids)])

Why the low-level API and not ``llama_cpp.Llama``: ``Llama`` holds one sequence and keeps
logits for every prompt position or for none. Serving needs several rows decoded in one
batch (one step of eight answers costs little more than one: the weights are read once), and
the log-probability of each chosen token (calibration) and of each token of a choice
(choice answers), without the vocabulary-sized logits of every prompt position.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant.generation.queue import WaitTooLongError

# (sequence, position, token, whether its logits are wanted)
BatchEntry = tuple[int, int, int, bool]


class GGUFLoadError(ValueError):
    """The file is missing, is not a GGUF llama.cpp loads, or does not fit the tokenizer."""


class ContextFullError(WaitTooLongError):
    """The answers in progress hold the context's key/value cells: retry shortly (a 503)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=5)


def _silence_llama_cpp() -> None:
    """llama.cpp logs every tensor it loads to stderr; the service has its own log."""
    import llama_cpp

    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, data: None)
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


_LOG_CALLBACK: Any = None


class GGUFModel:
    """A GGUF file loaded by llama.cpp with a context of ``sequences`` sequences sharing
    ``context_tokens`` key/value cells. Not thread-safe: the caller holds ``lock``."""

    def __init__(self, path: Path, *, threads: int = 0, context_tokens: int = 16384, sequences: int = 64,
                 batch_tokens: int = 2048, ubatch_tokens: int = 256) -> None:
        try:
            import llama_cpp
            from llama_cpp._internals import LlamaContext, LlamaModel
        except ImportError as exc:
            raise GGUFLoadError("the llama.cpp backend needs llama-cpp-python: `make setup-llama` builds it "
                                "(or pip install llama-cpp-python)") from exc
        path = Path(path)
        if not path.is_file():
            raise GGUFLoadError(f"no GGUF file at {path}")
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise GGUFLoadError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
        # llama.cpp's own log goes nowhere (below); verbose=False would instead swap the
        # process's stdout and stderr for /dev/null around each call, which is not thread-safe
        _silence_llama_cpp()
        self.path = path
        self.lock = threading.RLock()
        self._llama = llama_cpp
        try:
            self._model = LlamaModel(path_model=str(path), params=llama_cpp.llama_model_default_params(), verbose=True)
        except ValueError as exc:
            raise GGUFLoadError(f"llama.cpp could not load {path}: {exc}") from exc
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = context_tokens
        params.n_batch = batch_tokens
        # a small physical batch reads the prompt faster on a CPU (its activations stay in cache):
        # 256 measured best on two AVX-512 cores (bench/generation_engines.py)
        params.n_ubatch = min(ubatch_tokens, batch_tokens)
        params.n_seq_max = sequences
        params.kv_unified = True  # one pool of cells: a long row may use what short ones leave
        # flash attention keeps the value cache untransposed (the layout gguf_prefill writes);
        # measured no slower on a CPU
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.n_threads = params.n_threads_batch = threads or os.cpu_count() or 1
        try:
            self._context = LlamaContext(model=self._model, params=params, verbose=True)
        except ValueError as exc:
            raise GGUFLoadError(f"llama.cpp could not make a context of {context_tokens} tokens for {path}") from exc
        self.context_tokens = context_tokens
        self.batch_tokens = batch_tokens
        self.n_vocab = self._model.n_vocab()
        self._batch = llama_cpp.llama_batch_init(batch_tokens, 0, 1)
        self._free = list(range(sequences - 1, -1, -1))
        self._reserved: dict[int, int] = {}  # sequence -> the cells it may come to hold
        self._pieces: dict[int, bytes] = {}

    def close(self) -> None:
        with self.lock:
            if self._batch is not None:
                self._llama.llama_batch_free(self._batch)
                self._batch = None
            self._context.close()
            self._model.close()

    def tokenize(self, text: str) -> list[int]:
        """Token ids of a complete model input: special tokens (``<|im_start|>``) are read as
        such and nothing is added (as the local backend's ``add_special_tokens=False``)."""
        return list(self._model.tokenize(text.encode("utf-8"), False, True))

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (none for control tokens such as the end of a turn)."""
        cached = self._pieces.get(token)
        if cached is None:
            buffer = ctypes.create_string_buffer(64)
            size = self._llama.llama_token_to_piece(self._model.vocab, token, buffer, 64, 0, False)
            cached = self._pieces[token] = buffer.raw[: max(size, 0)]
        return cached

    def is_end(self, token: int) -> bool:
        return bool(self._llama.llama_vocab_is_eog(self._model.vocab, token))

    def take_sequence(self, tokens: int) -> int:
        """A free sequence that may grow to ``tokens`` cells; refused (a 503) while the
        sequences in progress have the context's cells spoken for."""
        if tokens > self.context_tokens:
            raise ValueError(f"{tokens} tokens (prompt and answer) do not fit the llama.cpp context of "
                             f"{self.context_tokens}; shorten the prompt or ask for fewer tokens")
        if not self._free or sum(self._reserved.values()) + tokens > self.context_tokens:
            raise ContextFullError(f"the llama.cpp context ({self.context_tokens} tokens) is taken by the answers "
                                   "in progress; retry shortly")
        seq = self._free.pop()
        self._reserved[seq] = tokens
        return seq

    def release_sequence(self, seq: int) -> None:
        """Forgets the sequence's cells and hands its id back."""
        self._context.kv_cache_seq_rm(seq, -1, -1)
        del self._reserved[seq]
        self._free.append(seq)

    def forget_after(self, seq: int, position: int) -> None:
        """Drops the sequence's cells from ``position`` on (a scored choice, say)."""
        self._context.kv_cache_seq_rm(seq, position, -1)

    def sequence_state(self, seq: int) -> bytes:
        """llama.cpp's serialisation of one sequence's cells (see :mod:`.gguf_prefill`)."""
        size = self._llama.llama_state_seq_get_size(self._context.ctx, seq)
        buffer = (ctypes.c_uint8 * size)()
        written = self._llama.llama_state_seq_get_data(self._context.ctx, buffer, size, seq)
        return bytes(buffer)[:written]

    def set_sequence_state(self, seq: int, blob: bytes) -> None:
        """Fills the (empty) sequence ``seq`` from a blob as :meth:`sequence_state` writes."""
        buffer = (ctypes.c_uint8 * len(blob)).from_buffer_copy(blob)
        if self._llama.llama_state_seq_set_data(self._context.ctx, buffer, len(blob), seq) != len(blob):
            raise ContextFullError(f"llama.cpp could not take {len(blob)} bytes of cache for sequence {seq}; "
                                   "retry shortly")

    def decode(self, entries: Sequence[BatchEntry]) -> np.ndarray:
        """Runs the entries through the model (in batches of ``batch_tokens``); returns the
        logits, float32 ``(k, n_vocab)``, of the k entries that asked for them, in order."""
        out: list[np.ndarray] = []
        batch = self._batch
        for start in range(0, len(entries), self.batch_tokens):
            part = entries[start:start + self.batch_tokens]
            wanted = 0
            for i, (seq, pos, token, logits) in enumerate(part):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = logits
                wanted += bool(logits)
            batch.n_tokens = len(part)
            code = self._llama.llama_decode(self._context.ctx, batch)
            if code == 1:
                raise ContextFullError(f"the llama.cpp context ({self.context_tokens} tokens) is full; "
                                       "set ASSISTANT_CONTEXT_TOKENS higher or ASSISTANT_MAX_BATCH lower")
            if code != 0:
                raise RuntimeError(f"llama_decode failed with code {code}")
            if wanted:
                pointer = self._llama.llama_get_logits(self._context.ctx)
                out.append(np.ctypeslib.as_array(pointer, shape=(wanted, self.n_vocab)).copy())
        return np.concatenate(out) if out else np.zeros((0, self.n_vocab), dtype=np.float32)


def log_softmax_at(logits: np.ndarray, tokens: Sequence[int]) -> np.ndarray:
    """The log-probability of ``tokens[i]`` under row i of ``logits``."""
    top = logits.max(axis=1, keepdims=True)
    norm = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return logits[np.arange(len(tokens)), list(tokens)] - norm
