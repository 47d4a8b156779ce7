"""Settings of the HTTP service, read from the environment once.

    ASSISTANT_INDEX_DIR         the document index (required to serve)
    ASSISTANT_DATA_DIR          uploads, API keys, answers and feedback (default: <index>/../service)
    ASSISTANT_AUTH              1 (default) or 0; 0 is refused unless bound to 127.0.0.1
    ASSISTANT_ANSWER_MODE       generative (default) | extractive | auto: see assistant.grounding.extract
    ASSISTANT_VERIFIER          overlap (default) or a cross-encoder (NLI / HHEM-style) by Hugging Face id or path
    ASSISTANT_MIN_SCORE         best passage cosine below this → "not in the documents" (default 0.3)
    ASSISTANT_TOP_K             passages per answer (default 4; requests may ask up to ASSISTANT_MAX_TOP_K)
    ASSISTANT_MAX_TOP_K         upper bound of top_k in any request (default 50)
    ASSISTANT_MAX_QUESTION_CHARS  longest question accepted (default 2000)
    ASSISTANT_MAX_BODY_BYTES    largest request body, uploads included (default 20 MB)
    ASSISTANT_RATE_PER_MINUTE   requests per key (or client address without auth) per minute (default 120)
    ASSISTANT_MAX_NEW_TOKENS_LIMIT  most completion tokens a request may ask for (default 512)
    ASSISTANT_MAX_FEEDBACK_CHARS    longest feedback correction (default 10000)
    ASSISTANT_AUTH_FAILURES_PER_MINUTE  wrong keys a client address may send per minute before 429 (default 10)
    ASSISTANT_HEADER_TIMEOUT    seconds a connection may take to send a request's headers (default 10)
    ASSISTANT_METRICS_PUBLIC    1: /metrics without a key; 0 (default): a reader key
    ASSISTANT_ANSWER_DEADLINE   seconds an answer may take; refused up front (503) when the queue cannot make it,
                                cut short when it runs late (default 120)
    ASSISTANT_SHUTDOWN_GRACE    seconds running answers get to finish when the service stops (default 10)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.grounding.answerability import DEFAULT_MAX_HALLUCINATION
from assistant.grounding.check import DEFAULT_MIN_SCORE
from assistant.grounding.extract import DEFAULT_ANSWER_MODE, check_answer_mode
from assistant.settings import from_env

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServiceSettings:
    index_dir: Path = field(metadata={"env": "ASSISTANT_INDEX_DIR", "help": "the document index folder"})
    data_dir: Path | None = field(default=None, metadata={"env": "ASSISTANT_DATA_DIR", "help": "uploads, keys, answers, feedback"})
    host: str = field(default="127.0.0.1", metadata={"env": "ASSISTANT_HOST", "help": "address to bind"})
    port: int = field(default=8000, metadata={"env": "ASSISTANT_PORT", "help": "port to bind"})
    auth: bool = field(default=True, metadata={"env": "ASSISTANT_AUTH", "help": "require API keys (off only on 127.0.0.1)"})
    min_score: float = field(default=DEFAULT_MIN_SCORE, metadata={"env": "ASSISTANT_MIN_SCORE", "help": "abstain below this best-passage cosine"})
    answer_mode: str = field(default=DEFAULT_ANSWER_MODE, metadata={
        "env": "ASSISTANT_ANSWER_MODE", "help": "generative | extractive | auto"})
    max_hallucination: float = field(default=DEFAULT_MAX_HALLUCINATION, metadata={
        "env": "ASSISTANT_MAX_HALLUCINATION",
        "help": "with a calibrator beside the index (assistant calibrate): the operating point, at most this "
                "share of unanswerable questions answered"})
    verifier: str = field(default="overlap", metadata={
        "env": "ASSISTANT_VERIFIER", "help": "overlap (word, number and MiniLM overlap) or a cross-encoder id or path"})
    top_k: int = field(default=4, metadata={"env": "ASSISTANT_TOP_K", "help": "passages per answer"})
    max_top_k: int = field(default=50, metadata={"env": "ASSISTANT_MAX_TOP_K", "help": "largest top_k a request may ask"})
    max_question_chars: int = field(default=2000, metadata={"env": "ASSISTANT_MAX_QUESTION_CHARS", "help": "longest question"})
    max_body_bytes: int = field(default=20_000_000, metadata={"env": "ASSISTANT_MAX_BODY_BYTES", "help": "largest request body"})
    rate_per_minute: int = field(default=120, metadata={"env": "ASSISTANT_RATE_PER_MINUTE", "help": "requests per key per minute"})
    max_new_tokens_limit: int = field(default=512, metadata={
        "env": "ASSISTANT_MAX_NEW_TOKENS_LIMIT", "help": "most completion tokens a request may ask for"})
    max_feedback_chars: int = field(default=10_000, metadata={
        "env": "ASSISTANT_MAX_FEEDBACK_CHARS", "help": "longest feedback correction"})
    auth_failures_per_minute: int = field(default=10, metadata={
        "env": "ASSISTANT_AUTH_FAILURES_PER_MINUTE",
        "help": "wrong API keys one client address may send per minute; then 429 until the budget refills"})
    header_timeout_s: float = field(default=10.0, metadata={
        "env": "ASSISTANT_HEADER_TIMEOUT", "help": "seconds a connection may take to send a request's headers"})
    metrics_public: bool = field(default=False, metadata={
        "env": "ASSISTANT_METRICS_PUBLIC", "help": "serve /metrics without a key"})
    answer_deadline_s: float = field(default=120.0, metadata={
        "env": "ASSISTANT_ANSWER_DEADLINE",
        "help": "seconds an answer may take: refused (503, Retry-After) when the queue's pace says it cannot "
                "make it, cut short when it runs late"})
    shutdown_grace_s: float = field(default=10.0, metadata={
        "env": "ASSISTANT_SHUTDOWN_GRACE", "help": "seconds running answers get to finish when the service stops"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "index_dir", Path(self.index_dir))
        if self.data_dir is None:
            object.__setattr__(self, "data_dir", self.index_dir.parent / "service")
        else:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if not self.auth and self.host not in LOOPBACK:
            raise ValueError(f"auth can be turned off only when bound to 127.0.0.1, not {self.host}; "
                             "create a key with `assistant keys create` instead")
        if not 1 <= self.top_k <= self.max_top_k:
            raise ValueError(f"top_k must be in 1..max_top_k ({self.max_top_k}), got {self.top_k}")
        for name in ("max_question_chars", "max_body_bytes", "rate_per_minute", "max_new_tokens_limit",
                     "max_feedback_chars", "auth_failures_per_minute", "header_timeout_s", "answer_deadline_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        try:
            check_answer_mode(self.answer_mode)
        except ValueError as exc:
            raise ValueError(f"{exc}; set ASSISTANT_ANSWER_MODE") from None
        if self.shutdown_grace_s < 0:
            raise ValueError(f"shutdown_grace_s must not be negative, got {self.shutdown_grace_s}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")
        if not 0.0 <= self.max_hallucination <= 1.0:
            raise ValueError(f"max_hallucination must be in [0, 1], got {self.max_hallucination}")

    @property
    def upload_dir(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "uploads"

    @property
    def service_db(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "service.sqlite"

    @classmethod
    def from_env(cls, **overrides: Any) -> ServiceSettings:
        """The environment's ``ASSISTANT_*`` values, then ``overrides`` that are not None."""
        if overrides.get("index_dir") is None and not os.environ.get("ASSISTANT_INDEX_DIR", "").strip():
            raise ValueError("no index given: pass --index DIR or set ASSISTANT_INDEX_DIR")
        return from_env(cls, **overrides)
