"""Generation through an OpenAI-compatible server (vLLM, llama.cpp's server, TGI…),
with the same ``chat_prompt``/``generate`` surface as ``LocalGenerator``.

Design: the chat template belongs to the server, which knows its model. So
``chat_prompt`` renders no template; it returns the messages as JSON behind
``CHAT_MARKER``, and ``generate`` sends such prompts to ``/v1/chat/completions``
and any other text to ``/v1/completions``. ``chat(messages)`` does both steps.
Decoding is greedy (``temperature`` 0), as locally. An adapter is a model name
on the server (vLLM serves each LoRA adapter under its own name), so a request's
adapter becomes the ``model`` field. A batch is sent as concurrent requests:
the server batches them itself.

    generator = OpenAIGenerator(GenerationSettings(backend="openai", openai_model="smollm2"))
    print(generator.chat([{"role": "user", "content": "What is asthma?"}]).text)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from assistant.generation.base import GenerationResult, GenerationSettings, TokenCallback, UnknownAdapterError, env_name

log = logging.getLogger(__name__)

# Starts a prompt made by chat_prompt: a control character no rendered template begins with.
CHAT_MARKER = "\x1echat\x1e"


class OpenAIBackendError(RuntimeError):
    """The server could not be reached or refused a request."""


class OpenAIGenerator:
    def __init__(self, settings: GenerationSettings, *, timeout_s: float = 300.0) -> None:
        self.settings = settings
        self.model_name = settings.openai_model
        self.model_dir: str | None = None  # the server holds the weights
        self.active_adapter: str | None = None
        self.generate_calls = 0
        root = settings.openai_base_url.rstrip("/")
        self.root = root[: -len("/v1")] if root.endswith("/v1") else root
        headers = {"Authorization": f"Bearer {settings.openai_api_key}"} if settings.openai_api_key else {}
        self._client = httpx.Client(base_url=self.root, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return CHAT_MARKER + json.dumps(messages, ensure_ascii=False)

    def chat(
        self, messages: list[dict[str, str]], *, max_new_tokens: int | None = None, adapter: str | None = None, on_token: TokenCallback | None = None
    ) -> GenerationResult:
        return self.generate([self.chat_prompt(messages)], max_new_tokens=max_new_tokens, adapter=adapter, on_token=[on_token])[0]

    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int | None = None,
        adapter: str | None = None,
        on_token: Sequence[TokenCallback | None] | None = None,
    ) -> list[GenerationResult]:
        if on_token is not None and len(on_token) != len(prompts):
            raise ValueError(f"on_token has {len(on_token)} entries for {len(prompts)} prompts")
        limit = self.settings.max_new_tokens if max_new_tokens is None else max_new_tokens
        if limit < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {limit}")
        self.generate_calls += 1
        model = adapter or self.active_adapter or self.model_name
        callbacks = list(on_token) if on_token is not None else [None] * len(prompts)
        if len(prompts) <= 1:
            return [self._complete(p, limit, model, c) for p, c in zip(prompts, callbacks)]
        with ThreadPoolExecutor(max_workers=len(prompts), thread_name_prefix="openai") as pool:
            return list(pool.map(lambda args: self._complete(*args), [(p, limit, model, c) for p, c in zip(prompts, callbacks)]))

    def continuation_nll(self, prompts: list[str], continuations: list[str], *, adapter: str | None = None,
                         batch_size: int = 8) -> tuple[float, int]:
        raise _needs_local("scoring text (the gate's general drift)")

    def continuation_nlls(self, prompts: list[str], continuations: list[str], *, adapter: str | None = None,
                          batch_size: int = 8) -> list[list[float]]:
        raise _needs_local("scoring choices")

    def choice_nlls(self, prompt: str, choices: Sequence[str], *, adapter: str | None = None) -> list[list[float]]:
        raise _needs_local("scoring choices")

    def list_adapters(self) -> list[str]:
        """Models the server lists besides the base model."""
        return [m["id"] for m in self._request("GET", "/v1/models").get("data", []) if m.get("id") != self.model_name]

    def load_adapter(self, name: str) -> None:
        """The server loads adapters; this only checks that it serves ``name``."""
        available = self.list_adapters()
        if name not in available:
            raise UnknownAdapterError(f"the server at {self.root} serves no model {name!r}; available: {available or 'none'}")

    def set_active_adapter(self, name: str | None) -> None:
        if name is not None:
            self.load_adapter(name)
        self.active_adapter = name

    def _complete(self, prompt: str, limit: int, model: str, on_token: TokenCallback | None) -> GenerationResult:
        chat = prompt.startswith(CHAT_MARKER)
        body: dict[str, Any] = {"model": model, "max_tokens": limit, "temperature": 0}
        if chat:
            path, body["messages"] = "/v1/chat/completions", json.loads(prompt[len(CHAT_MARKER) :])
        else:
            path, body["prompt"] = "/v1/completions", prompt
        if on_token is None:
            data = self._request("POST", path, body)
            choice = data["choices"][0]
            text = ((choice.get("message") or {}).get("content") if chat else choice.get("text")) or ""
            return _result(text, data.get("usage"), choice.get("finish_reason"))
        return self._stream(path, body, chat, on_token)

    def _stream(self, path: str, body: dict[str, Any], chat: bool, on_token: TokenCallback | None) -> GenerationResult:
        """Server-sent events: one ``data: {json}`` line per chunk, then ``data: [DONE]``."""
        body.update(stream=True, stream_options={"include_usage": True})
        pieces: list[str] = []
        usage: dict[str, Any] | None = None
        finish = None
        try:
            with self._client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[len("data:") :].strip()
                    if payload == "[DONE]":
                        break
                    chunk = json.loads(payload)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                        finish = choice.get("finish_reason") or finish
                        if piece:
                            pieces.append(piece)
                            on_token = _call(on_token, piece)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return _result("".join(pieces), usage, finish)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            self._raise_for(response)
        return response.json()

    def _unreachable(self, exc: Exception) -> OpenAIBackendError:
        return OpenAIBackendError(
            f"cannot reach the OpenAI-compatible server at {self.root} ({exc}); start it or set {env_name('openai_base_url')}"
        )

    def _raise_for(self, response: httpx.Response) -> None:
        hint = {
            401: f"; check {env_name('openai_api_key')}",
            404: f"; check {env_name('openai_model')} (or the adapter name) against GET /v1/models",
        }.get(response.status_code, "")
        raise OpenAIBackendError(f"{response.request.url} answered {response.status_code}: {response.text[:300]}{hint}")


def _needs_local(what: str) -> NotImplementedError:
    """Likelihoods come from the model's own forward pass, which a chat server does not expose."""
    return NotImplementedError(f"{what} needs the model in this process; "
                               "run it with the local backend (ASSISTANT_BACKEND=local)")


def _call(on_token: TokenCallback | None, piece: str) -> TokenCallback | None:
    """Hand ``piece`` on; a failing consumer is dropped so the answer still completes."""
    if on_token is None:
        return None
    try:
        on_token(piece)
        return on_token
    except Exception:
        log.warning("token callback failed; dropping it", exc_info=True)
        return None


def _result(text: str, usage: dict[str, Any] | None, finish: str | None) -> GenerationResult:
    usage = usage or {}
    return GenerationResult(
        text=text,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=finish or "stop",
    )
