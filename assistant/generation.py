"""Text generation: settings, the base model on disk, a local batched generator
with LoRA adapters, and a micro-batching queue in front of it.

    settings = GenerationSettings.from_env()
    generator = make_generator(settings)             # LocalGenerator or OpenAIGenerator
    with GenerationQueue(generator, settings.max_batch_size, settings.queue_size) as queue:
        prompt = generator.chat_prompt([{"role": "user", "content": "What is asthma?"}])
        print(queue.submit(prompt).result().text)

torch, transformers and peft are imported inside the functions that need them,
so code that only reads the settings (the web layer) does not load them.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from assistant.base_model import DEFAULT_MODEL, SMOLLM2_GGUF, bundled_smollm2_dir, cache_dir

log = logging.getLogger(__name__)

TokenCallback = Callable[[str], None]
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("local", "openai")
ENV_NAMES = {
    "model": "ASSISTANT_MODEL",
    "adapters_dir": "ASSISTANT_ADAPTERS_DIR",
    "device": "ASSISTANT_DEVICE",
    "max_new_tokens": "ASSISTANT_MAX_NEW_TOKENS",
    "max_batch_size": "ASSISTANT_MAX_BATCH",
    "queue_size": "ASSISTANT_QUEUE_SIZE",
    "backend": "ASSISTANT_BACKEND",
    "openai_base_url": "ASSISTANT_OPENAI_BASE_URL",
    "openai_api_key": "ASSISTANT_OPENAI_API_KEY",
    "openai_model": "ASSISTANT_OPENAI_MODEL",
}
_INT_FIELDS = ("max_new_tokens", "max_batch_size", "queue_size")
# The bundled GGUF is SmolLM2-135M-Instruct: adapters trained on the hub copy fit it too.
_BUNDLED_ALIASES = ("smollm2", "smollm2-135m-instruct")


@dataclass(frozen=True)
class GenerationSettings:
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "base model: 'bundled:smollm2', a HF id or a local dir"})
    adapters_dir: Path | None = field(default=None, metadata={"help": "adapter registry: one peft adapter dir per subfolder"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda (cuda loads the model in 4-bit NF4)"})
    max_new_tokens: int = field(default=256, metadata={"help": "default completion length limit, in tokens"})
    max_batch_size: int = field(default=8, metadata={"help": "most requests generated together in one batch"})
    queue_size: int = field(default=32, metadata={"help": "most requests waiting; more are refused with a retry time"})
    backend: str = field(default="local", metadata={"help": "local (transformers) | openai (an OpenAI-compatible server)"})
    openai_base_url: str = field(default="http://127.0.0.1:8000", metadata={"help": "server root, with or without /v1"})
    openai_api_key: str = field(default="", metadata={"help": "bearer token for the server, if it wants one"})
    openai_model: str = field(default="", metadata={"help": "model name the server serves (see its GET /v1/models)"})

    def __post_init__(self) -> None:
        if self.adapters_dir is not None and not isinstance(self.adapters_dir, Path):
            object.__setattr__(self, "adapters_dir", Path(self.adapters_dir))
        if self.device not in DEVICES:
            raise ValueError(f"device {self.device!r} is not one of {DEVICES}; set {ENV_NAMES['device']}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r} is not one of {BACKENDS}; set {ENV_NAMES['backend']}")
        for name in _INT_FIELDS:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}; set {ENV_NAMES[name]}")
        if not self.model:
            raise ValueError(f"no model named; set {ENV_NAMES['model']} (default {DEFAULT_MODEL})")
        if self.backend == "openai" and not (self.openai_base_url and self.openai_model):
            raise ValueError(
                f"the openai backend needs {ENV_NAMES['openai_base_url']} and {ENV_NAMES['openai_model']} "
                "(the model name listed by the server's GET /v1/models)"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GenerationSettings:
        """Settings from ``ASSISTANT_*`` variables; unset or empty ones keep their default."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_NAMES[f.name], "").strip()
            if not raw:
                continue
            if f.name in _INT_FIELDS:
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise ValueError(f"{ENV_NAMES[f.name]}={raw!r} is not a whole number") from None
            else:
                values[f.name] = raw
        return cls(**values)


@dataclass(frozen=True)
class GenerationResult:
    text: str
    prompt_tokens: int
    # generated tokens, the end-of-sequence token included when there was one
    completion_tokens: int
    # OpenAI's words: "stop" (end of sequence) or "length" (hit max_new_tokens)
    finish_reason: str


class UnknownAdapterError(ValueError):
    """A request named an adapter that is not in the registry."""


class TextGenerator(Protocol):
    """What the queue and the web layer need from a backend."""

    model_name: str
    active_adapter: str | None

    def chat_prompt(self, messages: list[dict[str, str]]) -> str: ...

    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int | None = None,
        adapter: str | None = None,
        on_token: Sequence[TokenCallback | None] | None = None,
    ) -> list[GenerationResult]: ...


def resolve_model_dir(model: str) -> str:
    """A directory or hub id transformers can load. ``bundled:smollm2`` is
    converted once from GGUF to safetensors under ``cache_dir()/models/smollm2``
    (de-quantizing takes ~20 s; loading the result takes ~3 s)."""
    if model != DEFAULT_MODEL:
        return model
    target = cache_dir() / "models" / "smollm2"
    if (target / "config.json").is_file():
        return str(target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = bundled_smollm2_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed in one step, so a run killed halfway
    # leaves a stray temp folder, never a half-written model folder.
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        converted: Any = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
        # The weights are de-quantized on load; left in place, the GGUF quantizer
        # would mark the saved folder as quantized and break reloading it.
        converted.hf_quantizer = None
        if hasattr(converted.config, "quantization_config"):
            del converted.config.quantization_config
        converted.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF).save_pretrained(tmp)
        tmp.chmod(0o755)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            shutil.rmtree(tmp)  # another process finished the same conversion first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(target)


def _last_component(name: str | None) -> str:
    return (name or "").replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()


class BatchStreamer:
    """A transformers streamer (``put``/``end``) for a batch: hands each row's newly
    decoded text to that row's callback and goes quiet for a row after its EOS.

    Each step decodes the row's whole completion and emits what grew, so the
    pieces join to exactly the final text for decoders that only append
    (byte-level BPE, SentencePiece); a trailing U+FFFD (a character split across
    tokens) is held back until it completes.
    """

    def __init__(self, tokenizer: Any, eos_ids: set[int], callbacks: Sequence[TokenCallback | None]) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.callbacks = list(callbacks)
        self.ids: list[list[int]] = [[] for _ in self.callbacks]
        self.finished = [False] * len(self.callbacks)
        self.sent = [0] * len(self.callbacks)
        self._seen_prompt = False

    def put(self, value: Any) -> None:
        if not self._seen_prompt:  # generate() first hands over the prompt ids
            self._seen_prompt = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.finished[row]:
                continue  # finished rows are padded from here on
            if token in self.eos_ids:
                self.finished[row] = True
                self._emit(row, final=True)
            else:
                self.ids[row].append(token)
                self._emit(row, final=False)

    def end(self) -> None:
        for row, done in enumerate(self.finished):
            if not done:
                self._emit(row, final=True)

    def _emit(self, row: int, *, final: bool) -> None:
        callback = self.callbacks[row]
        if callback is None:
            return
        text = self.tokenizer.decode(self.ids[row], skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):
            return
        piece = text[self.sent[row] :]
        if not piece:
            return
        self.sent[row] = len(text)
        try:
            callback(piece)
        except Exception:
            # A failing consumer (say, a closed connection) must not stop the
            # other rows of the batch; its row keeps generating unseen.
            log.warning("token callback for batch row %d failed; dropping it", row, exc_info=True)
            self.callbacks[row] = None


class LocalGenerator:
    """A causal LM in this process: left-padded greedy batches, LoRA adapters
    switched without reloading the base. Thread-safe: one generate at a time."""

    def __init__(self, settings: GenerationSettings) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.settings = settings
        self.model_name = settings.model
        self.model_dir = resolve_model_dir(settings.model)
        cuda = torch.cuda.is_available()
        if settings.device == "cuda" and not cuda:
            raise ValueError("ASSISTANT_DEVICE=cuda but torch sees no CUDA device; install a CUDA torch or set it to cpu")
        kwargs: dict[str, Any] = {"dtype": torch.float32}
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
        known = {_last_component(self.model_name), _last_component(self.model_dir)}
        self._base_names = (known | set(_BUNDLED_ALIASES)) if self.model_name == DEFAULT_MODEL else known

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        if not self.tokenizer.chat_template:
            raise ValueError(f"{self.model_name} has no chat template; use an instruct/chat model")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def list_adapters(self) -> list[str]:
        root = self.settings.adapters_dir
        if root is None or not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / "adapter_config.json").is_file())

    def load_adapter(self, name: str) -> None:
        """Load ``name`` from the registry (once). Refuses an adapter whose
        ``base_model_name_or_path`` ends in a different name than this base model
        (compared on the last path component, case-insensitively; unknown passes)."""
        with self._lock:
            if name in self._loaded:
                return
            available = self.list_adapters()
            if name not in available:  # also keeps request-supplied names inside the registry
                where = self.settings.adapters_dir or f"nowhere ({ENV_NAMES['adapters_dir']} is unset)"
                raise UnknownAdapterError(f"no adapter {name!r} in {where}; available: {available or 'none'}")
            import json

            from peft import PeftModel

            path = self.settings.adapters_dir / name  # type: ignore[operator]
            config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
            base = _last_component(config.get("base_model_name_or_path"))
            if base and base not in self._base_names:
                raise ValueError(
                    f"adapter {name!r} was trained on {config['base_model_name_or_path']!r}, not {self.model_name!r}; "
                    f"serve it with {ENV_NAMES['model']} set to that model, or retrain it on this one"
                )
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(path), adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name).eval()
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
        import torch

        if on_token is not None and len(on_token) != len(prompts):
            raise ValueError(f"on_token has {len(on_token)} entries for {len(prompts)} prompts")
        limit = self.settings.max_new_tokens if max_new_tokens is None else max_new_tokens
        if limit < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {limit}")
        if not prompts:
            return []
        with self._lock:
            self.generate_calls += 1
            batch = self.tokenizer(
                prompts, return_tensors="pt", padding=True, add_special_tokens=False, return_token_type_ids=False
            ).to(self.model.device)
            streamer = None
            if on_token is not None and any(c is not None for c in on_token):
                streamer = BatchStreamer(self.tokenizer, self.eos_ids, on_token)
            with self._using(self.active_adapter if adapter is None else adapter), torch.inference_mode():
                output = self.model.generate(
                    **batch,
                    max_new_tokens=limit,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=sorted(self.eos_ids),
                    streamer=streamer,
                )
        new_tokens = output[:, batch["input_ids"].shape[1] :].tolist()
        prompt_lengths = batch["attention_mask"].sum(dim=1).tolist()
        return [self._result(ids, int(n)) for ids, n in zip(new_tokens, prompt_lengths)]

    def continuation_nll(self, prompts: list[str], continuations: list[str], *, adapter: str | None = None,
                         batch_size: int = 8) -> tuple[float, int]:
        """Summed negative log-likelihood (nats) of each continuation following its
        prompt, under ``adapter`` (None: the base model, not the active adapter), and
        the number of tokens scored. An empty prompt scores the text from its second
        token. Used by the tuning gate to measure drift from the base model."""
        import torch
        import torch.nn.functional as F

        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts for {len(continuations)} continuations")
        total, count = 0.0, 0
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
                logits = self.model(input_ids=ids, attention_mask=attention).logits.float()
                # position t predicts token t+1
                nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
                keep = scored[:, 1:]
                total += float(nll[keep].sum())
                count += int(keep.sum())
        return total, count

    def _result(self, ids: list[int], prompt_tokens: int) -> GenerationResult:
        stop = next((i for i, token in enumerate(ids) if token in self.eos_ids), None)
        kept = ids if stop is None else ids[:stop]
        return GenerationResult(
            text=self.tokenizer.decode(kept, skip_special_tokens=True),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(ids) if stop is None else stop + 1,
            finish_reason="length" if stop is None else "stop",
        )


class QueueFullError(RuntimeError):
    """Too many requests waiting; ``retry_after`` is a guess in whole seconds."""

    def __init__(self, depth: int, retry_after: int) -> None:
        super().__init__(f"the generation queue is full ({depth} waiting); retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Request:
    prompt: str
    max_new_tokens: int | None
    adapter: str | None
    on_token: TokenCallback | None
    future: Future = field(default_factory=Future)


class GenerationQueue:
    """A bounded queue with one worker thread that micro-batches.

    Why: a decoding step costs about the same for one sequence as for eight
    (it is bound by reading the weights), so with several clients, generating
    their requests together multiplies throughput at little cost in latency.
    The worker takes the oldest request plus up to ``max_batch_size - 1`` more
    with the same adapter and length limit, waiting at most ``max_wait_s`` for
    them to arrive, and runs one ``generate`` call. Others keep their place.
    """

    def __init__(self, generator: TextGenerator, max_batch_size: int = 8, queue_size: int = 32, *, max_wait_s: float = 0.005) -> None:
        if max_batch_size < 1 or queue_size < 1 or max_wait_s < 0:
            raise ValueError("max_batch_size and queue_size must be at least 1 and max_wait_s not negative")
        self.generator = generator
        self.max_batch_size = max_batch_size
        self.queue_size = queue_size
        self.max_wait_s = max_wait_s
        self.requests_total = 0
        self.tokens_total = 0
        self.batches_total = 0
        self.generation_seconds_total = 0.0
        self._pending: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="generation-queue", daemon=True)
        self._worker.start()

    @property
    def depth(self) -> int:
        return len(self._pending)

    def submit(
        self, prompt: str, *, max_new_tokens: int | None = None, adapter: str | None = None, on_token: TokenCallback | None = None
    ) -> Future[GenerationResult]:
        request = _Request(prompt, max_new_tokens, adapter, on_token)
        with self._cond:
            if self._closed:
                raise RuntimeError("the generation queue is closed")
            if len(self._pending) >= self.queue_size:
                raise QueueFullError(len(self._pending), self.retry_after())
            self._pending.append(request)
            self._cond.notify()
        return request.future

    def retry_after(self) -> int:
        """Seconds until the waiting requests are likely served: batches ahead
        times the mean batch time so far (1 s before the first batch)."""
        per_batch = self.generation_seconds_total / self.batches_total if self.batches_total else 1.0
        batches_ahead = -(-len(self._pending) // self.max_batch_size)
        return max(1, round(per_batch * batches_ahead))

    _retry_after = retry_after  # the name server.py used first

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                deadline = time.monotonic() + self.max_wait_s
                while len(self._pending) < self.max_batch_size and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                batch = self._take_batch()
            self._run_batch(batch)

    def _take_batch(self) -> list[_Request]:
        key = (self._pending[0].adapter, self._pending[0].max_new_tokens)
        batch: list[_Request] = []
        rest: deque[_Request] = deque()
        for request in self._pending:
            if len(batch) < self.max_batch_size and (request.adapter, request.max_new_tokens) == key:
                batch.append(request)
            else:
                rest.append(request)
        self._pending = rest
        return batch

    def _run_batch(self, batch: list[_Request]) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        first = live[0]
        callbacks = [r.on_token for r in live]
        start = time.perf_counter()
        try:
            results = self.generator.generate(
                [r.prompt for r in live],
                max_new_tokens=first.max_new_tokens,
                adapter=first.adapter,
                on_token=callbacks if any(callbacks) else None,
            )
        except Exception as exc:  # belongs to the callers: each future raises it
            for request in live:
                request.future.set_exception(exc)
            return
        finally:
            elapsed = time.perf_counter() - start
            with self._cond:
                self.batches_total += 1
                self.generation_seconds_total += elapsed
        with self._cond:
            self.requests_total += len(live)
            self.tokens_total += sum(r.completion_tokens for r in results)
        for request, result in zip(live, results):
            request.future.set_result(result)

    def close(self, timeout: float | None = None) -> None:
        """Stop taking requests, fail those still waiting, let the running batch finish."""
        with self._cond:
            self._closed = True
            waiting, self._pending = list(self._pending), deque()
            self._cond.notify_all()
        for request in waiting:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(RuntimeError("the generation queue was closed before this request ran"))
        self._worker.join(timeout)

    def __enter__(self) -> GenerationQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_generator(settings: GenerationSettings) -> TextGenerator:
    """The backend named by ``settings.backend``."""
    if settings.backend == "openai":
        from assistant.openai_backend import OpenAIGenerator

        return OpenAIGenerator(settings)
    return LocalGenerator(settings)


__all__ = [
    "BatchStreamer",
    "GenerationQueue",
    "GenerationResult",
    "GenerationSettings",
    "LocalGenerator",
    "QueueFullError",
    "TextGenerator",
    "UnknownAdapterError",
    "make_generator",
    "resolve_model_dir",
]
