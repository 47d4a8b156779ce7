"""Checks on what a request asks for, against the service's limits; each failure is a
422 that says which limit and what was sent."""

from __future__ import annotations

from typing import Any

from litestar.exceptions import ValidationException

from assistant.generation.queue import GenerationQueue
from assistant.grounding.choices import check_choices
from assistant.grounding import extract
from assistant.serve.errors import TooManyRequests
from assistant.serve.settings import ServiceSettings
from indexer.search import SearchFilter

MAX_NEW_TOKENS = 1024


def check_question(settings: ServiceSettings, question: str) -> str:
    question = question.strip()
    if not question:
        raise ValidationException(detail="question is empty")
    limit = settings.max_question_chars
    if len(question) > limit:
        raise ValidationException(detail=f"question has {len(question)} characters; the limit is {limit}")
    return question


def check_top_k(settings: ServiceSettings, top_k: int | None) -> int:
    top_k = settings.top_k if top_k is None else top_k
    if not 1 <= top_k <= settings.max_top_k:
        raise ValidationException(detail=f"top_k must be in 1..{settings.max_top_k}, got {top_k}")
    return top_k


def check_max_tokens(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= MAX_NEW_TOKENS:
        raise ValidationException(detail=f"max_new_tokens must be in 1..{MAX_NEW_TOKENS}, got {value}")
    return value


def check_answer_mode(settings: ServiceSettings, mode: str | None) -> str:
    try:
        return extract.check_answer_mode(settings.answer_mode if mode is None else mode)
    except ValueError as exc:
        raise ValidationException(detail=str(exc)) from None


def parse_choices(choices: list[str] | None) -> tuple[str, ...]:
    if choices is None:
        return ()
    try:
        return tuple(check_choices(choices))
    except ValueError as exc:
        raise ValidationException(detail=str(exc)) from None


def parse_filters(body_filters: dict[str, Any] | None) -> SearchFilter:
    if not body_filters:
        return SearchFilter()
    try:
        return SearchFilter(
            sources=tuple(body_filters.get("sources", ())), tags=tuple(body_filters.get("tags", ())),
            date_from=body_filters.get("date_from"), date_to=body_filters.get("date_to"),
            doc_ids=tuple(body_filters.get("doc_ids", ())))
    except TypeError as exc:
        raise ValidationException(detail=f"bad filters: {exc}") from None


def refuse_when_queue_full(queue: GenerationQueue) -> None:
    """429 before a stream starts (once the status line is sent it is too late)."""
    if queue.depth >= queue.queue_size:
        raise TooManyRequests("the generation queue is full; retry later", queue.retry_after())
