"""The local backend: a causal LM in this process (transformers), left-padded greedy
batches, LoRA adapters (peft) switched without reloading the base, streaming by row.

    generator = LocalGenerator(GenerationSettings(model="bundled:smollm2"))
    prompt = generator.chat_prompt([{"role": "user", "content": "What is asthma?"}])
    print(generator.generate([prompt])[0].text)

torch, transformers and peft are imported inside the functions that need them,
so code that only reads the settings (the web layer) does not load them.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from assistant.generation.adapter_lookup import adapter_folder, base_names, registered_adapters
from assistant.generation.adapter_weights import attach_adapter
from assistant.generation.base import GenerationResult, GenerationSettings, TokenCallback
from assistant.generation.decoding import Decoding, StopPredicate, row_limits
from assistant.generation.model_files import resolve_model_dir

log = logging.getLogger(__name__)


class LocalGenerator:
    """A causal LM in this process: left-padded greedy batches, LoRA adapters
    switched without reloading the base. Thread-safe: one generate at a time."""

    def __init__(self, settings: GenerationSettings) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.settings = settings
        self.model_name = settings.model
        self.model_dir: str | None = resolve_model_dir(settings.model)
        cuda = torch.cuda.is_available()
        if settings.device == "cuda" and not cuda:
            raise ValueError("ASSISTANT_DEVICE=cuda but torch sees no CUDA device; install a CUDA torch or set it to cpu")
        kwargs: dict[str, Any] = {"dtype": getattr(torch, settings.cpu_dtype)}
        if cuda and settings.device != "cpu":
            from transformers import BitsAndBytesConfig

            kwargs = {
                "quantization_config": BitsAndBytesConfig(
                    load_in_4bit=True,
                    bnb_4bit_quant_type="nf4",
                    bnb_4bit_use_double_quant=True,
                    bnb_4bit_compute_dtype=torch.bfloat16,
                ),
                "device_map": {"": 0},
            }
        self.tokenizer: Any = AutoTokenizer.from_pretrained(self.model_dir)
        self.tokenizer.padding_side = "left"  # new tokens must follow every prompt directly
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ValueError(f"the tokenizer of {self.model_dir} has neither a pad nor an eos token; use a chat model")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model: Any = AutoModelForCausalLM.from_pretrained(self.model_dir, **kwargs).eval()
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = {self.tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}
        self.active_adapter: str | None = None
        self.generate_calls = 0
        self._loaded: set[str] = set()
        self._lock = threading.RLock()
        self._base_names = base_names(self.model_name, self.model_dir)

    @property
    def read_tokens(self) -> int:
        """Prompt tokens a batch reads per turn (see :mod:`assistant.generation.decoding`)."""
        return self.settings.read_tokens

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        if not self.tokenizer.chat_template:
            raise ValueError(f"{self.model_name} has no chat template; use an instruct/chat model")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def close(self) -> None:
        """Nothing to release: the weights go with the object."""

    def list_adapters(self) -> list[str]:
        return registered_adapters(self.settings)

    def load_adapter(self, name: str) -> None:
        """Load ``name`` from the registry (once); see :func:`.adapter_lookup.adapter_folder`."""
        with self._lock:
            if name in self._loaded:
                return
            path = adapter_folder(self.settings, name, self._base_names)
            self.model = attach_adapter(self.model, path, name)
            self._loaded.add(name)

    def set_active_adapter(self, name: str | None) -> None:
        """The adapter used when a request names none; None is the base model."""
        with self._lock:
            if name is not None:
                self.load_adapter(name)
            self.active_adapter = name

    @contextmanager
    def _using(self, name: str | None) -> Iterator[None]:
        if name is not None:
            self.load_adapter(name)
            self.model.set_adapter(name, inference_mode=True)
            yield
        elif self._loaded:
            with self.model.disable_adapter():  # LoRA layers are in the base now
                yield
        else:
            yield

    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int | None = None,
        adapter: str | None = None,
        on_token: Sequence[TokenCallback | None] | None = None,
    ) -> list[GenerationResult]:
        """Greedy completions of ``prompts`` in one left-padded batch, with
        ``adapter`` (None: the active adapter). ``on_token[i]`` gets row i's text
        as it is generated. Prompts are complete model inputs (see chat_prompt),
        so no special tokens are added."""
        if not prompts:
            return []
        return self.begin(prompts, max_new_tokens=max_new_tokens, adapter=adapter, on_token=on_token).run()

    def begin(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int | Sequence[int | None] | None = None,
        adapter: str | None = None,
        on_token: Sequence[TokenCallback | None] | None = None,
        stop: Sequence[StopPredicate | None] | None = None,
    ) -> Decoding:
        """A batch to decode a slice at a time (see :mod:`assistant.generation.decoding`);
        ``max_new_tokens`` one limit or one per row (None: the setting), ``stop[i]()``
        true ends row i early."""
        limits = row_limits(self.settings.max_new_tokens, prompts, max_new_tokens, on_token, stop)
        return Decoding(self, prompts, limits, adapter, on_token, stop, read_tokens=self.settings.read_tokens)

    def continuation_nll(self, prompts: list[str], continuations: list[str], *, adapter: str | None = None,
                         batch_size: int = 8) -> tuple[float, int]:
        """Summed negative log-likelihood (nats) of each continuation following its
        prompt, under ``adapter`` (None: the base model, not the active adapter), and
        the number of tokens scored. An empty prompt scores the text from its second
        token. Used by the tuning gate to measure drift from the base model."""
        rows = self.continuation_nlls(prompts, continuations, adapter=adapter, batch_size=batch_size)
        return sum(sum(row) for row in rows), sum(len(row) for row in rows)

    def continuation_nlls(self, prompts: list[str], continuations: list[str], *, adapter: str | None = None,
                          batch_size: int = 8) -> list[list[float]]:
        """The negative log-likelihood of each token of each continuation after its prompt
        (one right-padded forward pass per batch); see :meth:`continuation_nll`."""
        import torch
        import torch.nn.functional as F

        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts for {len(continuations)} continuations")
        out: list[list[float]] = []
        with self._lock, self._using(adapter), torch.inference_mode():
            for start in range(0, len(prompts), batch_size):
                rows, masks = [], []
                for prompt, text in zip(prompts[start:start + batch_size], continuations[start:start + batch_size]):
                    head = self.tokenizer(prompt, add_special_tokens=False).input_ids if prompt else []
                    tail = self.tokenizer(text, add_special_tokens=False).input_ids
                    rows.append(head + tail)
                    masks.append([0] * max(len(head), 1) + [1] * (len(tail) - (0 if head else 1)))
                width = max(len(r) for r in rows)
                pad = self.tokenizer.pad_token_id
                ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.model.device)
                attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=ids.device)
                scored = torch.tensor([m + [0] * (width - len(m)) for m in masks], device=ids.device).bool()
                # the output layer only where a token is scored: the vocabulary-sized logits of
                # every prompt position (600+ per RAG prompt) would cost most of the pass
                base = self._transformer()
                hidden = base.get_decoder()(input_ids=ids, attention_mask=attention).last_hidden_state
                keep = scored[:, 1:]  # position t predicts token t+1
                logits = base.get_output_embeddings()(hidden[:, :-1][keep]).float()
                nll = F.cross_entropy(logits, ids[:, 1:][keep], reduction="none").tolist()
                for count in keep.sum(dim=1).tolist():
                    out.append(nll[:count])
                    nll = nll[count:]
        return out

    def choice_nlls(self, prompt: str, choices: Sequence[str], *, adapter: str | None = None) -> list[list[float]]:
        """The negative log-likelihood of each token of each choice right after ``prompt``,
        under ``adapter`` (None: the base model). The prompt runs once; each choice then
        continues from its cached keys and values, which are cropped back after it (a
        choice of a few tokens costs a few positions, not another pass over the prompt)."""
        import torch
        import torch.nn.functional as F
        from transformers import DynamicCache

        head = self.tokenizer(prompt, add_special_tokens=False).input_ids
        if not head:
            raise ValueError("choice scoring needs a prompt")
        tails = [self.tokenizer(c, add_special_tokens=False).input_ids for c in choices]
        if not all(tails):
            raise ValueError("every choice must have at least one token")
        out: list[list[float]] = []
        base = self._transformer()
        # transformers 5 renamed the forward's cache argument (the old name warns until removed)
        name = "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"
        with self._lock, self._using(adapter), torch.inference_mode():
            cache = DynamicCache()
            first = self.model(input_ids=torch.tensor([head], device=self.model.device), use_cache=True,
                               **{name: cache}).logits[0, -1].float()
            for tail in tails:
                ids = torch.tensor([tail], device=self.model.device)
                logits = [first]
                if len(tail) > 1:  # the choice's own tokens predict its later ones
                    logits += list(self.model(input_ids=ids[:, :-1], use_cache=True, **{name: cache}).logits[0].float())
                    cache.crop(-(len(tail) - 1))  # back to the prompt alone
                out.append(F.cross_entropy(torch.stack(logits), ids[0], reduction="none").tolist())
        return out

    def _transformer(self) -> Any:
        """The transformers model under peft's wrapper (LoRA layers stay injected in it)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
