"""The one place that turns exceptions into HTTP responses: a JSON body
``{"status_code", "detail"[, "errors"]}`` with a 4xx for what the caller can fix
(validation and ``ValueError`` → 422, a full queue or rate limit → 429 with
``Retry-After``), 503 with ``Retry-After`` for an answer that would miss its deadline
or was stopped by a shutdown, and, for the rest, a 500 whose body says only ``internal error``
and an ``error_id``; the exception itself goes to the server log under that id.

A stream that fails after its status line was sent reports the same body in its
``error`` event (:func:`stream_error`), so a client never sees an exception's text."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from assistant.generation.queue import GenerationCancelled, QueueFullError, WaitTooLongError

LOG = logging.getLogger(__name__)


class TooManyRequests(HTTPException):
    status_code = 429

    def __init__(self, detail: str, retry_after: float):
        super().__init__(detail=detail, headers={"Retry-After": str(max(1, round(retry_after)))})


class Unavailable(TooManyRequests):
    """Not now, for everyone (a deadline the queue cannot make, a shutdown), not a client over its share."""

    status_code = 503


def describe(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers for ``exc``; a 5xx is logged with its error id."""
    if isinstance(exc, ValidationException):
        body: dict[str, Any] = {"status_code": 422, "detail": exc.detail}
        if exc.extra:
            body["errors"] = exc.extra
        return 422, body, {}
    if isinstance(exc, QueueFullError):
        exc = TooManyRequests("the generation queue is full; retry later", exc.retry_after)
    elif isinstance(exc, WaitTooLongError):
        exc = Unavailable(str(exc), exc.retry_after)
    elif isinstance(exc, GenerationCancelled):
        exc = Unavailable("the answer was stopped (the service is shutting down); retry shortly", 5)
    if isinstance(exc, Unavailable):
        return 503, {"status_code": 503, "detail": exc.detail}, dict(exc.headers or {})
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        return exc.status_code, {"status_code": exc.status_code, "detail": exc.detail}, dict(exc.headers or {})
    if isinstance(exc, ValueError):
        return 422, {"status_code": 422, "detail": str(exc)}, {}
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    error_id = "err_" + secrets.token_hex(6)
    LOG.error("request failed (error_id %s)", error_id, exc_info=exc)
    return status, {"status_code": status, "detail": "internal error", "error_id": error_id}, {}


def error_response(request: Request, exc: Exception) -> Response:
    status, body, headers = describe(exc)
    return Response(body, status_code=status, headers=headers)


def stream_error(exc: Exception) -> dict[str, Any]:
    """What a stream's ``error`` event carries: the body :func:`error_response` would send."""
    return describe(exc)[1]
