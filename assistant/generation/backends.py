"""Choosing the backend a :class:`GenerationSettings` names."""

from __future__ import annotations

from assistant.generation.base import GenerationSettings, TextGenerator


def make_generator(settings: GenerationSettings) -> TextGenerator:
    """The backend named by ``settings.backend``: the local model (transformers or llama.cpp) or an OpenAI-compatible server."""
    if settings.backend == "openai":
        from assistant.generation.openai import OpenAIGenerator

        return OpenAIGenerator(settings)
    if settings.backend == "llama":
        from assistant.generation.gguf_backend import GGUFGenerator

        return GGUFGenerator(settings)
    from assistant.generation.local import LocalGenerator

    return LocalGenerator(settings)
