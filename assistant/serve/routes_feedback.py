"""Feedback: ``POST /v1/feedback`` rates a recorded answer up or down, optionally with
a corrected answer (``assistant curate`` turns these into tuning data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import JSONBody

from assistant.serve.auth import require_role
from assistant.serve.records import Records, UnknownAnswerError
from assistant.serve.settings import ServiceSettings


@dataclass
class FeedbackBody:
    answer_id: str
    rating: str
    """``up`` or ``down``."""
    correction: str | None = None
    """At most the service's ``max_feedback_chars``."""


@post("/v1/feedback", guards=[require_role], opt={"role": "editor"}, status_code=201)
async def feedback(data: JSONBody[FeedbackBody], request: Request, records: NamedDependency[Records],
                   settings: NamedDependency[ServiceSettings]) -> dict[str, Any]:
    """Rate an answer up or down, optionally with a corrected answer."""
    limit = settings.max_feedback_chars
    if data.correction is not None and len(data.correction) > limit:
        raise ValidationException(detail=f"correction has {len(data.correction)} characters; the limit is {limit} "
                                         "(ASSISTANT_MAX_FEEDBACK_CHARS)")
    try:
        fid = records.add_feedback(data.answer_id, data.rating, data.correction, request.state.get("key_id"))
    except UnknownAnswerError:
        raise HTTPException(status_code=404, detail=f"no answer {data.answer_id!r}") from None
    return {"feedback_id": fid, "answer_id": data.answer_id}


ROUTES = [feedback]
