"""The HTTP service (Litestar): grounded answers, search, documents, feedback.

    assistant serve --index DIR --host 127.0.0.1 --port 8000

Routes (the generated OpenAPI schema is at ``/schema``): ``POST /v1/ask``
(``stream: true`` → server-sent events), ``GET /v1/search``, ``POST
/v1/chat/completions`` (OpenAI-compatible, grounded, citations added),
``POST|GET /v1/documents``, ``DELETE /v1/documents/{doc_id}``, ``POST
/v1/feedback``, ``GET /healthz | /readyz | /metrics``; adapters and tuning jobs in
:mod:`assistant.routes_tuning`.

Resources (index, generator, queue, key store, records) are made in
:func:`create_app` or passed in, and kept on ``app.state``. Route handlers
never import torch: they talk to :class:`assistant.answering.Answerer`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Response, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State, UploadFile
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import ServerSentEvent
from litestar.static_files import create_static_files_router

from assistant.answering import Answerer, AskRequest
from assistant.api_models import AskBody, ChatBody, DocumentBody, FeedbackBody
from assistant.generation import QueueFullError
from assistant.keys import KeyStore, role_allows
from assistant.metrics import ServiceMetrics
from assistant.rate_limit import RateLimiter
from assistant.records import Records, UnknownAnswerError
from assistant.settings import ServiceSettings
from indexer.search import SearchFilter

STATIC_DIR = Path(__file__).parent / "static"


class TooManyRequests(HTTPException):
    status_code = 429

    def __init__(self, detail: str, retry_after: float):
        super().__init__(detail=detail, headers={"Retry-After": str(max(1, round(retry_after)))})


# ---- auth, limits, errors ------------------------------------------------------------------------


def _token(connection: ASGIConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return connection.headers.get("x-api-key")


def require_role(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Guard: the route's ``opt["role"]`` against the caller's key; then the rate limit."""
    state = connection.app.state
    settings: ServiceSettings = state.settings
    caller = connection.client.host if connection.client else "unknown"
    if settings.auth:
        token = _token(connection)
        if not token:
            raise NotAuthorizedException(detail="missing API key: send 'Authorization: Bearer <key>'")
        key = state.key_store.verify(token)
        if key is None:
            raise NotAuthorizedException(detail="unknown or revoked API key")
        needed = handler.opt.get("role", "reader")
        if not role_allows(key.role, needed):
            raise PermissionDeniedException(detail=f"this route needs the {needed} role; the key has {key.role}")
        connection.scope["state"]["key_id"] = key.key_id
        caller = key.key_id
    wait = state.limiter.acquire(caller)
    if wait > 0:
        raise TooManyRequests(f"rate limit of {settings.rate_per_minute} requests per minute reached", wait)


def _error(request: Request, exc: Exception) -> Response:
    status = 500
    headers: dict[str, str] = {}
    if isinstance(exc, ValidationException):
        status, detail = 422, exc.detail
        extra = exc.extra
        body: dict[str, Any] = {"status_code": status, "detail": detail}
        if extra:
            body["errors"] = extra
        return Response(body, status_code=status)
    if isinstance(exc, QueueFullError):
        exc = TooManyRequests("the generation queue is full; retry later", exc.retry_after)
    if isinstance(exc, HTTPException):
        status, detail, headers = exc.status_code, exc.detail, dict(exc.headers or {})
    elif isinstance(exc, ValueError):
        status, detail = 422, str(exc)
    else:
        detail = "internal error"
    if status >= 500:
        request.logger.exception("request failed", exc_info=exc)
    return Response({"status_code": status, "detail": detail}, status_code=status, headers=headers)


def _check_question(state: State, question: str) -> str:
    question = question.strip()
    if not question:
        raise ValidationException(detail="question is empty")
    limit = state.settings.max_question_chars
    if len(question) > limit:
        raise ValidationException(detail=f"question has {len(question)} characters; the limit is {limit}")
    return question


def _check_top_k(state: State, top_k: int | None) -> int:
    top_k = state.settings.top_k if top_k is None else top_k
    if not 1 <= top_k <= state.settings.max_top_k:
        raise ValidationException(detail=f"top_k must be in 1..{state.settings.max_top_k}, got {top_k}")
    return top_k


MAX_NEW_TOKENS = 1024


def _check_max_tokens(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= MAX_NEW_TOKENS:
        raise ValidationException(detail=f"max_new_tokens must be in 1..{MAX_NEW_TOKENS}, got {value}")
    return value


def _filters(body_filters: dict[str, Any] | None) -> SearchFilter:
    if not body_filters:
        return SearchFilter()
    try:
        return SearchFilter(
            sources=tuple(body_filters.get("sources", ())), tags=tuple(body_filters.get("tags", ())),
            date_from=body_filters.get("date_from"), date_to=body_filters.get("date_to"),
            doc_ids=tuple(body_filters.get("doc_ids", ())))
    except TypeError as exc:
        raise ValidationException(detail=f"bad filters: {exc}") from None


def _submit_guard(state: State) -> None:
    """429 before a stream starts (once the status line is sent it is too late)."""
    queue = state.queue
    if queue is not None and queue.depth >= queue.queue_size:
        raise TooManyRequests("the generation queue is full; retry later", queue.retry_after())


# ---- routes -------------------------------------------------------------------------------------


@post("/v1/ask", guards=[require_role], opt={"role": "reader"}, status_code=200)
async def ask(data: JSONBody[AskBody], state: State) -> Response:
    """Answer a question from the indexed documents, with citations; ``stream: true`` for SSE."""
    req = AskRequest(question=_check_question(state, data.question), top_k=_check_top_k(state, data.top_k),
                     adapter=data.adapter, filters=_filters(data.filters), max_new_tokens=_check_max_tokens(data.max_new_tokens))
    answerer: Answerer = state.answerer
    _submit_guard(state)
    if data.stream:
        return ServerSentEvent(_sse(state, answerer.ask_stream(req)))
    result = await answerer.ask(req)
    state.metrics.observe_answer(result)
    return Response(result)


async def _sse(state: State, events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, str]]:
    try:
        async for event in events:
            kind = event.pop("event")
            if kind == "answer":
                state.metrics.observe_answer(event)
            yield {"event": kind, "data": json.dumps(event)}
    except Exception as exc:  # the status line is sent: report in the stream
        yield {"event": "error", "data": json.dumps({"detail": str(exc)})}


@get("/v1/search", guards=[require_role], opt={"role": "reader"})
async def search(state: State, q: FromQuery[str], k: FromQuery[int] = 10, mode: FromQuery[str] = "hybrid",
                 source: FromQuery[str | None] = None, tag: FromQuery[str | None] = None) -> dict[str, Any]:
    """Hybrid (or dense / bm25) search over the index."""
    q = _check_question(state, q)
    k = _check_top_k(state, k)
    if mode not in ("hybrid", "dense", "bm25"):
        raise ValidationException(detail=f"mode must be hybrid, dense or bm25, got {mode!r}")
    filt = SearchFilter(sources=(source,) if source else (), tags=(tag,) if tag else ())
    started = time.perf_counter()
    hits = await asyncio.to_thread(state.index.search, q, k=k, mode=mode, filters=filt)
    return {"query": q, "mode": mode, "took_ms": (time.perf_counter() - started) * 1000, "hits": [
        {"doc_id": h.doc_id, "source": h.source, "start": h.start, "end": h.end, "text": h.text, "score": h.score,
         "dense_score": h.dense_score, "bm25_score": h.bm25_score, "metadata": h.metadata, "tags": h.tags}
        for h in hits]}


@post("/v1/chat/completions", guards=[require_role], opt={"role": "reader"}, status_code=200)
async def chat_completions(data: JSONBody[ChatBody], state: State) -> Response:
    """OpenAI-compatible chat: the last user message is answered from the documents."""
    from assistant.openai_compat import chat_response, chat_stream

    users = [m for m in data.messages if m.get("role") == "user"]
    if not users:
        raise ValidationException(detail="messages hold no user message")
    req = AskRequest(question=_check_question(state, str(users[-1].get("content", ""))),
                     top_k=_check_top_k(state, data.top_k), adapter=data.adapter, max_new_tokens=_check_max_tokens(data.max_tokens))
    _submit_guard(state)
    answerer: Answerer = state.answerer
    if data.stream:
        return ServerSentEvent(chat_stream(answerer.ask_stream(req), state.metrics.observe_answer))
    result = await answerer.ask(req)
    state.metrics.observe_answer(result)
    return Response(chat_response(result))


@post("/v1/documents", guards=[require_role], opt={"role": "editor"}, status_code=201)
async def add_documents(request: Request, state: State) -> dict[str, Any]:
    """Add documents: JSON ``{"documents": [{"id", "text", "source", "metadata", "tags"}]}`` or
    ``{"id", "text", ...}``, or multipart file upload(s) in the field ``file``."""
    from assistant.uploads import documents_from_json, ingest_uploads

    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise ValidationException(detail="multipart body has no file")
        tags = [str(v) for k, v in form.multi_items() if k == "tags" and not isinstance(v, UploadFile)]
        uploads = [(f.filename or "upload", await f.read()) for f in files]
        report = await asyncio.to_thread(ingest_uploads, state.index, state.settings.upload_dir, uploads, tags)
    else:
        try:
            payload = await request.json()
        except Exception:
            raise ValidationException(detail="body is not valid JSON") from None
        docs = documents_from_json(payload, DocumentBody)
        report = await asyncio.to_thread(state.index.ingest_documents, docs)
    return {"added": report.added, "updated": report.updated, "unchanged": report.unchanged,
            "exact_duplicates": report.exact_duplicates, "near_duplicates": report.near_duplicates,
            "chunks": report.chunks, "skipped": [{"source": s, "reason": r} for s, r in report.skipped]}


@get("/v1/documents", guards=[require_role], opt={"role": "reader"})
async def list_documents(state: State, limit: FromQuery[int] = 100, offset: FromQuery[int] = 0) -> dict[str, Any]:
    if not 1 <= limit <= 1000 or offset < 0:
        raise ValidationException(detail="limit must be in 1..1000 and offset at least 0")
    docs = await asyncio.to_thread(state.index.list_documents, limit=limit, offset=offset)
    return {"documents": docs, "limit": limit, "offset": offset}


@delete("/v1/documents/{doc_id:path}", guards=[require_role], opt={"role": "editor"}, status_code=200)
async def delete_document(doc_id: FromPath[str], state: State) -> dict[str, Any]:
    doc_id = doc_id.lstrip("/")
    if not await asyncio.to_thread(state.index.delete, doc_id):
        raise HTTPException(status_code=404, detail=f"no document {doc_id!r}")
    return {"deleted": doc_id}


@post("/v1/feedback", guards=[require_role], opt={"role": "editor"}, status_code=201)
async def feedback(data: JSONBody[FeedbackBody], request: Request, state: State) -> dict[str, Any]:
    """Rate an answer up or down, optionally with a corrected answer."""
    try:
        fid = state.records.add_feedback(data.answer_id, data.rating, data.correction, request.state.get("key_id"))
    except UnknownAnswerError:
        raise HTTPException(status_code=404, detail=f"no answer {data.answer_id!r}") from None
    return {"feedback_id": fid, "answer_id": data.answer_id}


@get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz")
async def readyz(state: State) -> Response:
    ready = state.index is not None and state.answerer is not None
    return Response({"ready": ready, "index": state.index is not None, "model": state.answerer is not None},
                    status_code=200 if ready else 503)


@get("/metrics", media_type="text/plain; version=0.0.4")
async def metrics(state: State) -> bytes:
    if state.queue is not None:
        state.metrics.queue_depth.set(state.queue.depth)
    return state.metrics.render()


# ---- the app ------------------------------------------------------------------------------------


def create_app(settings: ServiceSettings, *, index: Any | None = None, generator: Any | None = None,
               queue: Any | None = None) -> Litestar:
    """The service. ``index``, ``generator`` and ``queue`` are made from the
    settings (index folder; ``GenerationSettings.from_env()``) unless given."""
    from assistant.lifecycle import open_resources

    state = State({"settings": settings, "metrics": ServiceMetrics(), "limiter": RateLimiter(settings.rate_per_minute)})
    state.update(open_resources(settings, index=index, generator=generator, queue=queue))
    from assistant.routes_tuning import ROUTES as TUNING_ROUTES

    routes: list[Any] = [ask, search, chat_completions, add_documents, list_documents, delete_document, feedback,
                         healthz, readyz, metrics, *TUNING_ROUTES]
    if STATIC_DIR.is_dir():
        routes.append(create_static_files_router(path="/", directories=[STATIC_DIR], html_mode=True))
    from assistant.request_metrics import RequestMetricsMiddleware

    return Litestar(
        route_handlers=routes, state=state, request_max_body_size=settings.max_body_bytes,
        exception_handlers={Exception: _error}, middleware=[RequestMetricsMiddleware()],
        on_shutdown=[lambda app: app.state.close_all()],
    )
