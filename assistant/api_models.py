"""Request bodies of the HTTP API (dataclasses: Litestar validates them and
puts them in the OpenAPI schema)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class AskBody:
    question: str
    top_k: int | None = None
    """Passages to retrieve (default: the service's setting; at most its max_top_k)."""
    adapter: str | None = None
    """A registered adapter to answer with (default: the active one)."""
    stream: bool = False
    """Server-sent events: ``token`` events, then one ``answer`` event."""
    filters: dict[str, Any] | None = None
    """``sources``, ``tags``, ``doc_ids`` (lists), ``date_from``, ``date_to``."""
    max_new_tokens: int | None = None


@dataclass
class ChatBody:
    messages: list[dict[str, Any]]
    model: str | None = None
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    adapter: str | None = None


@dataclass
class DocumentBody:
    text: str
    id: str | None = None
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


@dataclass
class FeedbackBody:
    answer_id: str
    rating: str
    """``up`` or ``down``."""
    correction: str | None = None
