"""OpenAI chat-completions wire format for grounded answers, so OpenAI clients
work unchanged; the answer's citations ride along in an extra ``citations``
field (clients ignore fields they don't know)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any


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
    blank line, and the final chunk carries it with its claims."""
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
    yield "[DONE]"
