"""The one place that turns exceptions into HTTP responses: a JSON body
``{"status_code", "detail"[, "errors"]}`` with a 4xx for what the caller can fix
(validation and ``ValueError`` → 422, a full queue or rate limit → 429 with
``Retry-After``) and a logged 500 for the rest."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from assistant.generation.queue import QueueFullError


class TooManyRequests(HTTPException):
    status_code = 429

    def __init__(self, detail: str, retry_after: float):
        super().__init__(detail=detail, headers={"Retry-After": str(max(1, round(retry_after)))})


def error_response(request: Request, exc: Exception) -> Response:
    status = 500
    headers: dict[str, str] = {}
    if isinstance(exc, ValidationException):
        body: dict[str, Any] = {"status_code": 422, "detail": exc.detail}
        if exc.extra:
            body["errors"] = exc.extra
        return Response(body, status_code=422)
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
