"""OpenAI chat-completions wire format for grounded answers, so OpenAI clients
work unchanged; the answer's citations ride along in an extra ``citations``
field (clients ignore fields they don't know)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from litestar.exceptions import ValidationException

from assistant.serve.errors import stream_error


def message_text(content: Any, where: str = "content") -> str:
    """A message's text: a string, or a list of text parts (``{"type": "text", "text": ...}``,
    joined by newlines). Anything else is a 422 naming what was sent."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ValidationException(detail=f"{where} must be a string or a list of text parts, got "
                                         f"{'null' if content is None else type(content).__name__}")
    texts = []
    for n, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            shown = f"type {kind!r}" if isinstance(part, dict) else type(part).__name__
            raise ValidationException(detail=f"{where}[{n}] is a {shown} part; only text parts are supported")
        if not isinstance(part.get("text"), str):
            raise ValidationException(detail=f"{where}[{n}].text must be a string")
        texts.append(part["text"])
    return "\n".join(texts)


def _base(result_model: str) -> dict[str, Any]:
    return {"id": "chatcmpl-" + secrets.token_hex(8), "created": int(time.time()), "model": result_model}


def chat_response(result: dict[str, Any]) -> dict[str, Any]:
    timings = result.get("timings", {})
    prompt, completion = int(timings.get("prompt_tokens", 0)), int(timings.get("completion_tokens", 0))
    return {
        **_base(result.get("model") or "assistant"), "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result["answer"]},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        "citations": result.get("citations", []), "grounded": result.get("grounded"),
        "answer_id": result.get("answer_id"), "closest": result.get("closest", []),
        "claims": result.get("claims", []), "dropped": result.get("dropped", []),
    }


async def chat_stream(events: AsyncIterator[dict[str, Any]], observe: Callable[[dict[str, Any]], None]
                      ) -> AsyncIterator[str]:
    """``chat.completion.chunk`` deltas as the model writes. Streamed text is
    provisional: when the check changed them (a sentence dropped, a citation made by
    the system, or an abstention), a last delta gives the verified answer after a
    blank line, and the final chunk carries it with its claims. A failure after the
    status line is an ``{"error": ...}`` chunk (the mapper's body, no exception text)."""
    try:
        async for chunk in _chunks(events, observe):
            yield chunk
    except Exception as exc:
        yield json.dumps({"error": stream_error(exc)})
    yield "[DONE]"


async def _chunks(events: AsyncIterator[dict[str, Any]], observe: Callable[[dict[str, Any]], None]
                  ) -> AsyncIterator[str]:
    base = None
    async for event in events:
        kind = event.pop("event")
        if base is None:
            base = {**_base(event.get("model") or "assistant"), "object": "chat.completion.chunk"}
        if kind == "token":
            yield json.dumps({**base, "choices": [{"index": 0, "delta": {"content": event["text"]},
                                                   "finish_reason": None}]})
        elif kind == "answer":
            observe(event)
            delta: dict[str, Any] = {}
            if not event.get("grounded") or event["answer"] != (event.get("raw_answer") or "").strip():
                delta = {"content": "\n\n" + event["answer"]}
            yield json.dumps({**base, "model": event.get("model") or base["model"],
                              "choices": [{"index": 0, "delta": delta, "finish_reason": "stop"}],
                              "citations": event.get("citations", []), "grounded": event.get("grounded"),
                              "answer_id": event.get("answer_id"), "answer": event["answer"],
                              "claims": event.get("claims", []), "dropped": event.get("dropped", [])})
