"""Reading prompts with transformers in bfloat16 and decoding with llama.cpp
(``ASSISTANT_PREFILL=torch``): the prompt's keys and values, computed by torch, are written
into the llama.cpp sequence, which then decodes from them.

Why two engines: on CPUs with AMX or AVX512-BF16, oneDNN's bfloat16 kernels read a prompt
about 5× faster than llama.cpp does, while llama.cpp decodes 2–3× faster than torch
(bench/generation_engines.py). A grounded prompt is ~800 tokens and its answer a few dozen,
so each engine does the part it is fast at.

How: llama.cpp serialises one sequence's cache as a header, the cells (position, sequence),
then each layer's key rows and each layer's value rows (float16). The layout is read from a
blob llama.cpp itself writes for a one-token sequence when the model opens; anything else
than expected (another llama.cpp version, a transposed value cache, other types) turns this
path off with a warning, and llama.cpp reads the prompts itself. Keys differ in one respect:
llama.cpp stores the query and key rows of each head with the two rotary halves interleaved
(see :func:`.gguf_export._as_llama_cpp_lays_it_out`), so torch's keys are permuted to match.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from assistant.generation.decoding import _cache_argument
from assistant.generation.gguf_model import GGUFModel

log = logging.getLogger(__name__)

F16 = 1  # ggml's type id for float16


@dataclass(frozen=True)
class CacheLayout:
    """What a one-sequence blob of this llama.cpp build looks like."""

    head: bytes  # the words before the cell count, copied as they are
    layers: int
    row_bytes: int  # one cell's keys (or values) in one layer


def cache_layout(model: GGUFModel, seq: int) -> CacheLayout | None:
    """The layout, from the blob of a one-token sequence ``seq`` (emptied again after)."""
    with model.lock:
        model.decode([(seq, 0, model.tokenize("a")[0], False)])
        try:
            blob = model.sequence_state(seq)
        finally:
            model.forget_after(seq, 0)
    try:
        count = struct.unpack_from("<I", blob, 12)[0]
        pos, n_seq, _ = struct.unpack_from("<iIi", blob, 16)
        v_trans, layers = struct.unpack_from("<2I", blob, 28)
        offset, row_bytes = 36, None
        for _ in range(2 * layers):
            kind, size = struct.unpack_from("<iQ", blob, offset)
            if kind != F16 or (row_bytes is not None and size != row_bytes):
                raise ValueError(f"a cache row of type {kind}, {size} bytes")
            row_bytes = size
            offset += 12 + size
        if (count, pos, n_seq, v_trans) != (1, 0, 1, 0) or offset != len(blob) or not layers:
            raise ValueError("an unexpected header")
    except (struct.error, ValueError) as exc:
        log.warning("this llama.cpp build stores its cache in another layout (%s); llama.cpp reads prompts", exc)
        return None
    return CacheLayout(head=blob[:12], layers=layers, row_bytes=int(row_bytes or 0))


def sequence_blob(layout: CacheLayout, keys: list[np.ndarray], values: list[np.ndarray], seq: int) -> bytes:
    """A blob for one sequence of ``T`` cells from per-layer ``(T, row)`` float16 arrays."""
    cells = len(keys[0])
    parts = [layout.head, struct.pack("<I", cells),
             np.array([(p, 1, seq) for p in range(cells)], dtype="<i4").tobytes(),
             struct.pack("<2I", 0, layout.layers)]
    for rows in (*keys, *values):
        parts += [struct.pack("<iQ", F16, layout.row_bytes), np.ascontiguousarray(rows, dtype="<f2").tobytes()]
    return b"".join(parts)


class TorchPrefill:
    """Reads prompts with ``local`` (a transformers backend in bfloat16) into llama.cpp sequences."""

    def __init__(self, local: Any, layout: CacheLayout) -> None:
        self.local, self.layout = local, layout
        config = local.model.config
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        if self.kv_heads * self.head_dim * 2 != layout.row_bytes or config.num_hidden_layers != layout.layers:
            raise ValueError("the transformers model and the GGUF differ in shape")

    def read(self, model: GGUFModel, seq: int, ids: list[int], adapter: str | None) -> np.ndarray:
        """Runs ``ids`` through torch, writes their keys and values as sequence ``seq`` of
        ``model``; returns the logits after the last token (float32)."""
        import torch
        from transformers import DynamicCache

        local = self.local
        with local._lock, local._using(adapter), torch.inference_mode():
            cache = DynamicCache()
            out = local.model(input_ids=torch.tensor([ids]), use_cache=True, logits_to_keep=1,
                              **_cache_argument(local._transformer(), cache))
            logits = out.logits[0, -1].float().numpy()
            keys = [self._as_rows(layer.keys, permute=True) for layer in cache.layers]
            values = [self._as_rows(layer.values, permute=False) for layer in cache.layers]
        blob = sequence_blob(self.layout, keys, values, seq)
        model.set_sequence_state(seq, blob)
        return logits

    def _as_rows(self, tensor: Any, *, permute: bool) -> np.ndarray:
        """``(1, heads, T, d)`` → ``(T, heads·d)`` float16, keys' rotary halves interleaved."""
        import torch

        t = tensor[0].transpose(0, 1)  # (T, heads, d)
        if permute:
            t = t.reshape(t.shape[0], self.kv_heads, 2, self.head_dim // 2).transpose(2, 3)
        return t.reshape(t.shape[0], -1).to(dtype=torch.float16).numpy()
