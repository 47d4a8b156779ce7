"""What every generation backend is: its settings, its result, and the
:class:`TextGenerator` protocol that the queue, grounding, tuning and the service
rely on (so none of them guesses with ``getattr``).

    settings = from_env(GenerationSettings)          # ASSISTANT_MODEL, ASSISTANT_DEVICE, ...
    generator = make_generator(settings)             # assistant.generation.backends
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from assistant.generation.model_files import DEFAULT_MODEL

TokenCallback = Callable[[str], None]
DEVICES = ("auto", "cpu", "cuda")
CPU_DTYPES = ("float32", "bfloat16")
BACKENDS = ("local", "llama", "openai")
GGUF_TYPES = ("q8_0", "q4_0", "q4_1", "f16", "bf16")
PREFILLS = ("auto", "torch", "llama")


def _env(name: str, default: object, help: str) -> Any:
    """A field read from the environment variable ``name``."""
    return field(default=default, metadata={"help": help, "env": name})


@dataclass(frozen=True)
class GenerationSettings:
    model: str = _env("ASSISTANT_MODEL", DEFAULT_MODEL, "base model: 'bundled:smollm2', a HF id or a local dir")
    adapters_dir: Path | None = _env("ASSISTANT_ADAPTERS_DIR", None, "adapter registry: one peft adapter dir per subfolder")
    device: str = _env("ASSISTANT_DEVICE", "auto", "auto | cpu | cuda (cuda loads the model in 4-bit NF4)")
    cpu_dtype: str = _env("ASSISTANT_CPU_DTYPE", "float32",
                          "local backend on a CPU: float32 | bfloat16 (reads prompts several times faster where "
                          "the CPU has AVX512-BF16 or AMX)")
    max_new_tokens: int = _env("ASSISTANT_MAX_NEW_TOKENS", 256, "default completion length limit, in tokens")
    max_batch_size: int = _env("ASSISTANT_MAX_BATCH", 8, "most requests generated together in one batch")
    queue_size: int = _env("ASSISTANT_QUEUE_SIZE", 32, "most requests waiting; more are refused with a retry time")
    slice_tokens: int = _env("ASSISTANT_SLICE_TOKENS", 16,
                             "tokens a batch decodes per turn before others may run (0: each batch in one call)")
    read_tokens: int = _env("ASSISTANT_READ_TOKENS", 1024,
                            "local backend: prompt tokens a batch reads per turn (at least 16 positions of each "
                            "row), so that other batches' rows can be cut or advanced between pieces (0: a "
                            "batch's prompts in one go)")
    backend: str = _env("ASSISTANT_BACKEND", "local",
                        "local (transformers) | llama (llama.cpp in this process) | openai (an OpenAI-compatible server)")
    gguf: Path | None = _env("ASSISTANT_GGUF", None,
                             "llama backend: the base model's GGUF file (default: the bundled model exported once)")
    gguf_type: str = _env("ASSISTANT_GGUF_TYPE", "q8_0",
                          "llama backend: the GGUF type the bundled model and adapters are exported as")
    prefill: str = _env("ASSISTANT_PREFILL", "auto",
                        "llama backend: what reads prompts: torch (transformers in bfloat16, fastest where the "
                        "CPU has AMX or AVX512-BF16; llama.cpp still decodes) | llama (llama.cpp) | auto (torch "
                        "where bfloat16 is native, else llama)")
    threads: int = _env("ASSISTANT_THREADS", 0, "llama backend: CPU threads (0: every core)")
    context_tokens: int = _env("ASSISTANT_CONTEXT_TOKENS", 16384,
                               "llama backend: key/value cells shared by every answer in progress")
    openai_base_url: str = _env("ASSISTANT_OPENAI_BASE_URL", "http://127.0.0.1:8000", "server root, with or without /v1")
    openai_api_key: str = _env("ASSISTANT_OPENAI_API_KEY", "", "bearer token for the server, if it wants one")
    openai_model: str = _env("ASSISTANT_OPENAI_MODEL", "", "model name the server serves (see its GET /v1/models)")

    def __post_init__(self) -> None:
        for name in ("adapters_dir", "gguf"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if self.device not in DEVICES:
            raise ValueError(f"device {self.device!r} is not one of {DEVICES}; set {env_name('device')}")
        if self.cpu_dtype not in CPU_DTYPES:
            raise ValueError(f"cpu_dtype {self.cpu_dtype!r} is not one of {CPU_DTYPES}; set {env_name('cpu_dtype')}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r} is not one of {BACKENDS}; set {env_name('backend')}")
        for name in ("max_new_tokens", "max_batch_size", "queue_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}; set {env_name(name)}")
        if self.gguf_type not in GGUF_TYPES:
            raise ValueError(f"gguf_type {self.gguf_type!r} is not one of {GGUF_TYPES}; set {env_name('gguf_type')}")
        if self.prefill not in PREFILLS:
            raise ValueError(f"prefill {self.prefill!r} is not one of {PREFILLS}; set {env_name('prefill')}")
        if self.threads < 0 or self.context_tokens < 256:
            raise ValueError(f"threads must not be negative and context_tokens must be at least 256; set "
                             f"{env_name('threads')} or {env_name('context_tokens')}")
        for name in ("slice_tokens", "read_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}; set {env_name(name)}")
        if not self.model:
            raise ValueError(f"no model named; set {env_name('model')} (default {DEFAULT_MODEL})")
        if self.backend == "openai" and not (self.openai_base_url and self.openai_model):
            raise ValueError(
                f"the openai backend needs {env_name('openai_base_url')} and {env_name('openai_model')} "
                "(the model name listed by the server's GET /v1/models)"
            )


def env_name(setting: str) -> str:
    """The environment variable of a :class:`GenerationSettings` field, for error messages."""
    return str(GenerationSettings.__dataclass_fields__[setting].metadata["env"])


@dataclass(frozen=True)
class GenerationResult:
    text: str
    prompt_tokens: int
    # generated tokens, the end-of-sequence token included when there was one
    completion_tokens: int
    # OpenAI's words: "stop" (end of sequence) or "length" (hit max_new_tokens)
    finish_reason: str
    # mean log-probability (nats) of the generated tokens: how sure the model was, one of
    # the answerability signals; None where the backend does not report it
    mean_logprob: float | None = None


class UnknownAdapterError(ValueError):
    """A request named an adapter that is not in the registry."""


@runtime_checkable  # the web layer injects a generator and checks its type
class TextGenerator(Protocol):
    """A generation backend: the local transformers model or an OpenAI-compatible server."""

    settings: GenerationSettings
    model_name: str
    model_dir: str | None
    """The base model's folder when it is loaded here (None for a remote backend)."""
    active_adapter: str | None
    """The adapter used when a request names none (None: the base model)."""
    generate_calls: int

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The model input for a chat, ending where the assistant's turn begins."""
        ...

    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int | None = None,
        adapter: str | None = None,
        on_token: Sequence[TokenCallback | None] | None = None,
    ) -> list[GenerationResult]:
        """Greedy completions, one per prompt; ``on_token[i]`` gets row i's text as it comes."""
        ...

    def continuation_nll(self, prompts: list[str], continuations: list[str], *, adapter: str | None = None,
                         batch_size: int = 8) -> tuple[float, int]:
        """Summed negative log-likelihood of each continuation after its prompt, and the token count."""
        ...

    def continuation_nlls(self, prompts: list[str], continuations: list[str], *, adapter: str | None = None,
                          batch_size: int = 8) -> list[list[float]]:
        """The negative log-likelihood of each token of each continuation (choice scoring)."""
        ...

    def choice_nlls(self, prompt: str, choices: Sequence[str], *, adapter: str | None = None) -> list[list[float]]:
        """The negative log-likelihood of each token of each choice right after ``prompt``."""
        ...

    def list_adapters(self) -> list[str]: ...

    def load_adapter(self, name: str) -> None: ...

    def set_active_adapter(self, name: str | None) -> None: ...

    def close(self) -> None: ...
