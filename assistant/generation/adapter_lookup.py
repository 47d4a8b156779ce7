"""Finding a registered adapter for a base model served in this process: the registry's
folders that hold a peft adapter, and the check that an adapter was trained on this base.
Shared by the transformers backend (which attaches the LoRA weights) and the llama.cpp
backend (which serves the adapter merged into a GGUF file)."""

from __future__ import annotations

import json
from pathlib import Path

from assistant.generation.base import GenerationSettings, UnknownAdapterError, env_name
from assistant.generation.model_files import DEFAULT_MODEL

# The bundled GGUF is SmolLM2-135M-Instruct: adapters trained on the hub copy fit it too.
_BUNDLED_ALIASES = ("smollm2", "smollm2-135m-instruct")


def last_component(name: str | None) -> str:
    return (name or "").replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()


def base_names(model_name: str, model_dir: str | None) -> set[str]:
    """The names an adapter's ``base_model_name_or_path`` may end in to fit this base."""
    known = {last_component(model_name), last_component(model_dir)} - {""}
    return (known | set(_BUNDLED_ALIASES)) if model_name == DEFAULT_MODEL else known


def registered_adapters(settings: GenerationSettings) -> list[str]:
    root = settings.adapters_dir
    if root is None or not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "adapter_config.json").is_file())


def adapter_folder(settings: GenerationSettings, name: str, names_of_base: set[str]) -> Path:
    """The registry folder of adapter ``name``. Refuses a name not in the registry (so a
    request-supplied name never leaves it) and an adapter whose ``base_model_name_or_path``
    ends in a different name than this base model (compared on the last path component,
    case-insensitively; unknown passes)."""
    available = registered_adapters(settings)
    if name not in available:
        where = settings.adapters_dir or f"nowhere ({env_name('adapters_dir')} is unset)"
        raise UnknownAdapterError(f"no adapter {name!r} in {where}; available: {available or 'none'}")
    path = settings.adapters_dir / name  # type: ignore[operator]
    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    base = last_component(config.get("base_model_name_or_path"))
    if base and base not in names_of_base:
        raise ValueError(
            f"adapter {name!r} was trained on {config['base_model_name_or_path']!r}, not {settings.model!r}; "
            f"serve it with {env_name('model')} set to that model, or retrain it on this one"
        )
    return path
