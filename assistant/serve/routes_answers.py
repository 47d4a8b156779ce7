"""Answers: ``POST /v1/ask`` (``stream: true`` → server-sent events) and the
OpenAI-compatible ``POST /v1/chat/completions`` (grounded, citations added).

Handlers check the request and hand it to the grounding package's
:class:`~assistant.grounding.answerer.Answerer`; they never touch the model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import JSONBody
from litestar.response import ServerSentEvent

from assistant.generation.queue import GenerationQueue
from assistant.grounding.answerer import Answerer, AskRequest
from assistant.serve.auth import require_role
from assistant.serve.errors import stream_error
from assistant.serve.limits import (
    check_answer_mode,
    check_max_tokens,
    check_question,
    check_top_k,
    parse_choices,
    parse_filters,
    refuse_when_queue_full,
)
from assistant.serve.metrics import ServiceMetrics
from assistant.serve.openai_compat import chat_response, chat_stream, message_text
from assistant.serve.settings import ServiceSettings

READER = {"role": "reader"}


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
    """At most the service's ``max_new_tokens_limit`` (default: the generation setting)."""
    answer_mode: str | None = None
    """``generative`` | ``extractive`` | ``auto`` (default: the service's setting)."""
    choices: list[str] | None = None
    """Answer with the most likely of these (e.g. ``["yes", "no", "maybe"]``), with probabilities."""


@dataclass
class ChatBody:
    messages: list[dict[str, Any]]
    model: str | None = None
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    adapter: str | None = None
    answer_mode: str | None = None
    choices: list[str] | None = None


@post("/v1/ask", guards=[require_role], opt=READER, status_code=200)
async def ask(request: Request, data: JSONBody[AskBody], settings: NamedDependency[ServiceSettings], answerer: NamedDependency[Answerer], queue: NamedDependency[GenerationQueue],
              metrics: NamedDependency[ServiceMetrics]) -> Response:
    """Answer a question from the indexed documents, with citations; ``stream: true`` for SSE."""
    req = AskRequest(question=check_question(settings, data.question), top_k=check_top_k(settings, data.top_k),
                     adapter=data.adapter, filters=parse_filters(data.filters),
                     max_new_tokens=check_max_tokens(settings, data.max_new_tokens),
                     answer_mode=check_answer_mode(settings, data.answer_mode), choices=parse_choices(data.choices))
    refuse_when_queue_full(queue, settings, req.max_new_tokens)
    if data.stream:
        return ServerSentEvent(_sse(metrics, answerer.ask_stream(req)))
    result = await unless_client_leaves(request, answerer.ask(req))
    metrics.observe_answer(result)
    return Response(result)


async def unless_client_leaves(request: Request, answering: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """The answer, unless the client disconnects first: then answering is cancelled (the
    queue stops its row at the next token) instead of generating for nobody. A stream
    needs no watcher: its generator is closed when a write to the gone client fails."""
    answer = asyncio.ensure_future(answering)

    async def client_left() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass  # the body was read already; the next message is the disconnect

    watcher = asyncio.ensure_future(client_left())
    try:
        await asyncio.wait({answer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server is stopping this request
        answer.cancel()
        raise
    finally:
        watcher.cancel()
    if not answer.done():
        answer.cancel()
        await asyncio.gather(answer, return_exceptions=True)
        raise HTTPException(status_code=499, detail="the client closed the request")
    return answer.result()


async def _sse(metrics: ServiceMetrics, events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, str]]:
    try:
        async for event in events:
            kind = event.pop("event")
            if kind == "answer":
                metrics.observe_answer(event)
            yield {"event": kind, "data": json.dumps(event)}
    except Exception as exc:  # the status line is sent: report in the stream, as the mapper would
        yield {"event": "error", "data": json.dumps(stream_error(exc))}


@post("/v1/chat/completions", guards=[require_role], opt=READER, status_code=200)
async def chat_completions(request: Request, data: JSONBody[ChatBody], settings: NamedDependency[ServiceSettings], answerer: NamedDependency[Answerer],
                           queue: NamedDependency[GenerationQueue], metrics: NamedDependency[ServiceMetrics]) -> Response:
    """OpenAI-compatible chat: the last user message is answered from the documents."""
    users = [n for n, m in enumerate(data.messages) if m.get("role") == "user"]
    if not users:
        raise ValidationException(detail="messages hold no user message")
    question = message_text(data.messages[users[-1]].get("content"), f"messages[{users[-1]}].content")
    req = AskRequest(question=check_question(settings, question),
                     top_k=check_top_k(settings, data.top_k), adapter=data.adapter,
                     max_new_tokens=check_max_tokens(settings, data.max_tokens, "max_tokens"),
                     answer_mode=check_answer_mode(settings, data.answer_mode), choices=parse_choices(data.choices))
    refuse_when_queue_full(queue, settings, req.max_new_tokens)
    if data.stream:
        return ServerSentEvent(chat_stream(answerer.ask_stream(req), metrics.observe_answer))
    result = await unless_client_leaves(request, answerer.ask(req))
    metrics.observe_answer(result)
    return Response(chat_response(result))


ROUTES = [ask, chat_completions]
