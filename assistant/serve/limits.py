"""Checks on what a request asks for, against the service's limits; each failure is a
422 that says which limit and what was sent."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any

from litestar import Request
from litestar.exceptions import ValidationException

from assistant.generation.queue import GenerationQueue
from assistant.grounding.choices import check_choices
from assistant.grounding import extract
from assistant.serve.errors import TooManyRequests, Unavailable
from assistant.serve.settings import ServiceSettings
from indexer.search import SearchFilter

MAX_OFFSET = 2**31 - 1
"""Paging offsets above this are refused (SQLite's integers stop at 2**63 - 1; no index is this large)."""
MAX_PAGE = 1000
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a JSON body may have (decoders recurse, and fail past ~1000)."""
FILTER_LISTS = ("sources", "tags", "doc_ids")
FILTER_DATES = ("date_from", "date_to")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


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


def check_max_tokens(settings: ServiceSettings, value: int | None, name: str = "max_new_tokens") -> int | None:
    limit = settings.max_new_tokens_limit
    if value is not None and not 1 <= value <= limit:
        raise ValidationException(detail=f"{name} must be in 1..{limit} (the service's maximum, "
                                         f"ASSISTANT_MAX_NEW_TOKENS_LIMIT), got {value}")
    return value


def check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_PAGE or not 0 <= offset <= MAX_OFFSET:
        raise ValidationException(detail=f"limit must be in 1..{MAX_PAGE} and offset in 0..{MAX_OFFSET}, "
                                         f"got limit={limit}, offset={offset}")


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in ``body`` nest deeper than ``limit``, without decoding it:
    strings removed, then the innermost bracket pairs removed ``limit`` times (C-speed passes);
    anything left was nested deeper (or unbalanced, which the decoder rejects anyway). A run of
    more than ``limit`` openers ends it early: a deep body would otherwise lose two bytes a pass."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    too_many_openers = re.compile(rb"[\[{]{%d}" % (limit + 1))
    for _ in range(limit):
        if not brackets:
            return False
        if too_many_openers.search(brackets):
            return True
        brackets = brackets.replace(b"[]", b"").replace(b"{}", b"")
    return bool(brackets)


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


async def reject_deep_json(request: Request) -> None:
    """``before_request`` hook (after the guards): a 422 for a body nested past
    :data:`MAX_JSON_DEPTH`, before any decoder recurses into it. Form bodies are not JSON."""
    if request.method in ("GET", "HEAD", "OPTIONS", "DELETE") or request.headers.get("content-type", "").startswith(
            ("multipart/form-data", "application/x-www-form-urlencoded")):
        return
    body = await request.body()
    # a 20 MB body takes ~0.1 s to scan: off the event loop
    deep = await asyncio.to_thread(json_depth_exceeds, body) if len(body) > 1_000_000 else json_depth_exceeds(body)
    if deep:
        raise ValidationException(detail=f"the JSON body nests arrays and objects more than {MAX_JSON_DEPTH} deep")


def parse_filters(body_filters: dict[str, Any] | None) -> SearchFilter:
    """``sources``, ``tags``, ``doc_ids``: lists of strings; ``date_from``, ``date_to``: ISO dates."""
    if not body_filters:
        return SearchFilter()
    unknown = sorted(set(body_filters) - {*FILTER_LISTS, *FILTER_DATES})
    if unknown:
        raise ValidationException(detail=f"unknown filters {unknown}; known: {', '.join(FILTER_LISTS + FILTER_DATES)}")
    values: dict[str, Any] = {}
    for name in FILTER_LISTS:
        items = body_filters.get(name) or []
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ValidationException(detail=f"filters.{name} must be a list of strings")
        values[name] = tuple(items)
    for name in FILTER_DATES:
        value = body_filters.get(name)
        if value is not None:
            try:
                datetime.fromisoformat(value)
            except (TypeError, ValueError):
                raise ValidationException(detail=f"filters.{name} must be an ISO date such as 2024-05-31, "
                                                 f"got {value!r:.60}") from None
        values[name] = value
    return SearchFilter(**values)


def refuse_when_queue_full(queue: GenerationQueue, settings: ServiceSettings, max_new_tokens: int | None) -> None:
    """429 when the queue is full, 503 when its pace says the answer would miss the
    deadline: before a stream starts (once the status line is sent it is too late)."""
    if queue.depth >= queue.queue_size:
        raise TooManyRequests("the generation queue is full; retry later", queue.retry_after())
    expected = queue.expected_seconds(max_new_tokens)
    if expected > settings.answer_deadline_s:
        raise Unavailable(f"the answer would take about {expected:.0f} s, past the deadline of "
                          f"{settings.answer_deadline_s:.0f} s (ASSISTANT_ANSWER_DEADLINE); retry later "
                          "or ask for fewer tokens", queue.retry_after())
