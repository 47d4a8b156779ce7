"""The llama.cpp backend (``ASSISTANT_BACKEND=llama``): the base model and each adapter as a
GGUF file served by llama.cpp in this process, with the transformers backend's surface
(batches decoded in slices, streaming, token log-probabilities for calibration and choice
answers).

    generator = GGUFGenerator(GenerationSettings(backend="llama"))
    print(generator.generate([generator.chat_prompt([{"role": "user", "content": "What is asthma?"}])])[0].text)

Why: on a CPU, llama.cpp decodes 2–4× faster than transformers in float32 (per-token
framework overhead, not arithmetic; bench/generation_engines.py). Tuning stays in torch.

Which files: ``ASSISTANT_GGUF`` names the base model's GGUF; without it the bundled model
is exported once as ``ASSISTANT_GGUF_TYPE`` (Q8_0: its prompt reading is twice the 4-bit
file's) into the cache. An adapter is served merged into the base, from
``<registry>/<name>/gguf/<name>-Q8_0.gguf``, which ``assistant export <name> --out
<registry>/<name>/gguf`` writes, or which is written the first time the adapter loads.
The chat template and the tokenizer check come from the base model's transformers
tokenizer, so prompts are the same text whichever backend serves them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from assistant.generation.adapter_lookup import adapter_folder, base_names, registered_adapters
from assistant.generation.base import GenerationResult, GenerationSettings, TokenCallback, env_name
from assistant.generation.decoding import StopPredicate, row_limits
from assistant.generation.gguf_decoding import GGUFDecoding
from assistant.generation.gguf_model import GGUFLoadError, GGUFModel, log_softmax_at
from assistant.generation.gguf_prefill import TorchPrefill, cache_layout
from assistant.generation.model_files import DEFAULT_MODEL, cache_dir, resolve_model_dir, tokenizer_json

log = logging.getLogger(__name__)

# Text whose tokens show whether a GGUF's vocabulary is the tokenizer's: special tokens,
# digits, accents, code and several scripts.
_TOKENIZER_PROBE = ("<|im_start|>user\nDose: 2.5 mg/kg twice daily (max 40 mg) — see §4.2, "
                    "naïve Größe 血压 Давление; x = f(y) + 1;<|im_end|>\n<|im_start|>assistant\n")


class GGUFGenerator:
    """The base model and adapters as GGUF files in llama.cpp. Thread-safe: each model's
    calls are serialised by its lock (one decode at a time, as a CPU wants)."""

    def __init__(self, settings: GenerationSettings) -> None:
        from transformers import AutoTokenizer

        self.settings = settings
        self.model_name = settings.model
        self.active_adapter: str | None = None
        self.generate_calls = 0
        self._lock = threading.RLock()
        base = self._base_gguf()
        self.tokenizer: Any = AutoTokenizer.from_pretrained(tokenizer_json(settings.model).parent)
        self._models: dict[str | None, GGUFModel] = {None: self._open(base, f"the base model {settings.model}")}
        self._torch_prefill = self._torch_reader() if reads_with_torch(settings.prefill) else None

    def _torch_reader(self) -> TorchPrefill | None:
        """The transformers model in bfloat16 that reads prompts (None where llama.cpp's cache
        layout is not the one :mod:`.gguf_prefill` writes)."""
        from assistant.generation.local import LocalGenerator

        model = self._models[None]
        with model.lock:
            seq = model.take_sequence(1)
            try:
                layout = cache_layout(model, seq)
            finally:
                model.release_sequence(seq)
        if layout is None:
            return None
        local = LocalGenerator(dataclasses.replace(self.settings, backend="local", device="cpu", cpu_dtype="bfloat16"))
        return TorchPrefill(local, layout)

    @cached_property
    def model_dir(self) -> str | None:
        """The base model's transformers folder: what adapters are checked against and merged
        into (converted from the bundled GGUF on first use, so the service starts without it)."""
        return resolve_model_dir(self.model_name)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        if not self.tokenizer.chat_template:
            raise ValueError(f"{self.model_name} has no chat template; use an instruct/chat model")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def close(self) -> None:
        with self._lock:
            for model in self._models.values():
                model.close()
            self._models.clear()

    # ---- files ---------------------------------------------------------------------------

    def _base_gguf(self) -> Path:
        if self.settings.gguf is not None:
            return self.settings.gguf
        if self.model_name != DEFAULT_MODEL:
            raise GGUFLoadError(f"the llama backend needs a GGUF of {self.model_name}: set {env_name('gguf')} (e.g. "
                                f"made by llama.cpp's convert_hf_to_gguf.py), or use {env_name('backend')}=local")
        qtype = self.settings.gguf_type
        folder = cache_dir() / "gguf" / "smollm2"
        target = folder / f"base-{qtype.upper()}.gguf"
        if not target.is_file():
            log.info("exporting the bundled model as %s for llama.cpp into %s (once)", qtype.upper(), folder)
            self._export(folder, None, qtype)
        return target

    def _adapter_gguf(self, name: str) -> Path:
        folder = adapter_folder(self.settings, name, base_names(self.model_name, self.model_dir))
        qtype = self.settings.gguf_type
        target = folder / "gguf" / f"{name}-{qtype.upper()}.gguf"
        if not target.is_file():
            log.info("exporting adapter %s merged into the base as %s for llama.cpp (once)", name, qtype.upper())
            self._export(folder / "gguf", folder, qtype)
        return target

    def _export(self, out: Path, adapter_dir: Path | None, qtype: str) -> None:
        from assistant.generation.gguf_export import export_model

        export_model(out, base=self.model_name, adapter_dir=adapter_dir, types=(qtype,),
                     source_gguf=self.settings.gguf, verify_tokens=8)

    def _open(self, path: Path, what: str) -> GGUFModel:
        # one sequence per row of the batches in progress, and a few for scoring
        sequences = min(256, self.settings.max_batch_size * 4 + 4)
        model = GGUFModel(path, threads=self.settings.threads, context_tokens=self.settings.context_tokens,
                          sequences=sequences)
        theirs = model.tokenize(_TOKENIZER_PROBE)
        ours = self.tokenizer(_TOKENIZER_PROBE, add_special_tokens=False).input_ids
        if theirs != ours:
            model.close()
            raise GGUFLoadError(f"{path} does not use the tokenizer of {what} (the same text makes other tokens); "
                                f"export it from that model, or set {env_name('model')} to the model it was made from")
        return model

    # ---- adapters ------------------------------------------------------------------------

    def list_adapters(self) -> list[str]:
        return registered_adapters(self.settings)

    def load_adapter(self, name: str) -> None:
        """The adapter's merged GGUF, loaded once (exported first if need be). A failure
        leaves the models already served as they were."""
        with self._lock:
            if name not in self._models:
                self._models[name] = self._open(self._adapter_gguf(name), f"adapter {name}")

    def set_active_adapter(self, name: str | None) -> None:
        with self._lock:
            if name is not None:
                self.load_adapter(name)
            self.active_adapter = name

    def _model(self, adapter: str | None) -> GGUFModel:
        if adapter is not None:
            self.load_adapter(adapter)
        return self._models[adapter]

    # ---- generation ----------------------------------------------------------------------

    def generate(self, prompts: list[str], *, max_new_tokens: int | None = None, adapter: str | None = None,
                 on_token: Sequence[TokenCallback | None] | None = None) -> list[GenerationResult]:
        """Greedy completions of ``prompts``, with ``adapter`` (None: the active adapter)."""
        if not prompts:
            return []
        return self.begin(prompts, max_new_tokens=max_new_tokens, adapter=adapter, on_token=on_token).run()

    def begin(self, prompts: Sequence[str], *, max_new_tokens: int | Sequence[int | None] | None = None,
              adapter: str | None = None, on_token: Sequence[TokenCallback | None] | None = None,
              stop: Sequence[StopPredicate | None] | None = None) -> GGUFDecoding:
        """A batch to decode a slice at a time (see :mod:`.gguf_decoding`)."""
        limits = row_limits(self.settings.max_new_tokens, prompts, max_new_tokens, on_token, stop)
        name = self.active_adapter if adapter is None else adapter
        return GGUFDecoding(self, self._model(name), name, prompts, limits, on_token, stop)

    def read_prompts(self, model: GGUFModel, adapter: str | None, rows: list[tuple[int, list[int]]]) -> Any:
        """Each ``(sequence, prompt ids)`` into ``model``'s context, by llama.cpp or (with
        ``ASSISTANT_PREFILL=torch``) by transformers; the logits after each prompt's last token."""
        if self._torch_prefill is None:
            return model.decode([(seq, pos, token, pos == len(ids) - 1) for seq, ids in rows
                                 for pos, token in enumerate(ids)])
        return np.stack([self._torch_prefill.read(model, seq, ids, adapter) for seq, ids in rows])

    # ---- scoring -------------------------------------------------------------------------

    def continuation_nll(self, prompts: list[str], continuations: list[str], *, adapter: str | None = None,
                         batch_size: int = 8) -> tuple[float, int]:
        """Summed negative log-likelihood (nats) of each continuation after its prompt under
        ``adapter`` (None: the base model), and the number of tokens scored."""
        rows = self.continuation_nlls(prompts, continuations, adapter=adapter, batch_size=batch_size)
        return sum(sum(row) for row in rows), sum(len(row) for row in rows)

    def continuation_nlls(self, prompts: list[str], continuations: list[str], *, adapter: str | None = None,
                          batch_size: int = 8) -> list[list[float]]:
        """The negative log-likelihood of each token of each continuation after its prompt;
        an empty prompt scores the text from its second token. One pair at a time: logits
        are kept only where a token is scored."""
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts for {len(continuations)} continuations")
        if self._torch_prefill is not None:  # scoring is all prompt reading: the faster engine's job
            return self._torch_prefill.local.continuation_nlls(prompts, continuations, adapter=adapter,
                                                               batch_size=batch_size)
        model = self._model(adapter)
        out: list[list[float]] = []
        for prompt, text in zip(prompts, continuations):
            head = model.tokenize(prompt) if prompt else []
            tail = model.tokenize(text)
            ids = head + tail
            first = max(len(head), 1)  # the first scored token
            if len(ids) <= first:
                out.append([])
                continue
            with model.lock:
                seq = model.take_sequence(len(ids))
                try:
                    logits = model.decode([(seq, pos, token, first - 1 <= pos < len(ids) - 1)
                                           for pos, token in enumerate(ids)])
                finally:
                    model.release_sequence(seq)
            out.append((-log_softmax_at(logits, ids[first:])).tolist())
        return out

    def choice_nlls(self, prompt: str, choices: Sequence[str], *, adapter: str | None = None) -> list[list[float]]:
        """The negative log-likelihood of each token of each choice right after ``prompt``
        (None: the base model). The prompt is read once; each choice continues from its
        cells, which are dropped again after it."""
        if self._torch_prefill is not None:
            return self._torch_prefill.local.choice_nlls(prompt, choices, adapter=adapter)
        model = self._model(adapter)
        head = model.tokenize(prompt)
        if not head:
            raise ValueError("choice scoring needs a prompt")
        tails = [model.tokenize(c) for c in choices]
        if not all(tails):
            raise ValueError("every choice must have at least one token")
        out: list[list[float]] = []
        with model.lock:
            seq = model.take_sequence(len(head) + max(len(t) for t in tails))
            try:
                first = model.decode([(seq, pos, token, pos == len(head) - 1) for pos, token in enumerate(head)])
                for tail in tails:
                    logits = first
                    if len(tail) > 1:  # the choice's own tokens predict its later ones
                        rest = model.decode([(seq, len(head) + i, token, True) for i, token in enumerate(tail[:-1])])
                        model.forget_after(seq, len(head))
                        logits = np.concatenate([first, rest])
                    out.append((-log_softmax_at(logits, tail)).tolist())
            finally:
                model.release_sequence(seq)
        return out


def reads_with_torch(prefill: str) -> bool:
    """Whether transformers reads the prompts: ``torch``, or ``auto`` on a CPU where bfloat16
    is native (AMX or AVX512-BF16: 5× float32's prompt reading, bench/generation_engines.py;
    elsewhere bfloat16 is emulated and llama.cpp reads faster)."""
    if prefill != "auto":
        return prefill == "torch"
    import torch

    from indexer.embedder import native_bf16

    return native_bf16(torch.device("cpu"))
