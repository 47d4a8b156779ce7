"""Choosing the backend a :class:`GenerationSettings` names."""

from __future__ import annotations

from assistant.generation.base import GenerationSettings, TextGenerator


def make_generator(settings: GenerationSettings) -> TextGenerator:
    """The backend named by ``settings.backend``: the local model or an OpenAI-compatible server."""
    if settings.backend == "openai":
        from assistant.generation.openai import OpenAIGenerator

        return OpenAIGenerator(settings)
    from assistant.generation.local import LocalGenerator

    return LocalGenerator(settings)
