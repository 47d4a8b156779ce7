"""Settings of the HTTP service, read from the environment once.

    ASSISTANT_INDEX_DIR         the document index (required to serve)
    ASSISTANT_DATA_DIR          uploads, API keys, answers and feedback (default: <index>/../service)
    ASSISTANT_AUTH              1 (default) or 0; 0 is refused unless bound to 127.0.0.1
    ASSISTANT_MIN_SCORE         best passage cosine below this → "not in the documents" (default 0.3)
    ASSISTANT_TOP_K             passages per answer (default 4; requests may ask up to ASSISTANT_MAX_TOP_K)
    ASSISTANT_MAX_TOP_K         upper bound of top_k in any request (default 50)
    ASSISTANT_MAX_QUESTION_CHARS  longest question accepted (default 2000)
    ASSISTANT_MAX_BODY_BYTES    largest request body, uploads included (default 20 MB)
    ASSISTANT_RATE_PER_MINUTE   requests per key (or client address without auth) per minute (default 120)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServiceSettings:
    index_dir: Path = field(metadata={"help": "the document index folder"})
    data_dir: Path | None = field(default=None, metadata={"help": "uploads, keys, answers, feedback"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind"})
    port: int = field(default=8000, metadata={"help": "port to bind"})
    auth: bool = field(default=True, metadata={"help": "require API keys (off only on 127.0.0.1)"})
    min_score: float = field(default=0.3, metadata={"help": "abstain below this best-passage cosine"})
    top_k: int = field(default=4, metadata={"help": "passages per answer"})
    max_top_k: int = field(default=50, metadata={"help": "largest top_k a request may ask"})
    max_question_chars: int = field(default=2000, metadata={"help": "longest question"})
    max_body_bytes: int = field(default=20_000_000, metadata={"help": "largest request body"})
    rate_per_minute: int = field(default=120, metadata={"help": "requests per key per minute"})

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
        for name in ("max_question_chars", "max_body_bytes", "rate_per_minute"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")

    @property
    def upload_dir(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "uploads"

    @property
    def service_db(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "service.sqlite"

    @classmethod
    def from_env(cls, **overrides: object) -> "ServiceSettings":
        env = os.environ
        values: dict[str, object] = {}
        casts = {f.name: f.type for f in fields(cls)}
        for f in fields(cls):
            key = "ASSISTANT_" + f.name.upper()
            if key in env:
                raw = env[key]
                values[f.name] = raw.strip().lower() not in ("0", "false", "no", "off") if casts[f.name] == "bool" \
                    else int(raw) if casts[f.name] == "int" else float(raw) if casts[f.name] == "float" else raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "index_dir" not in values:
            raise ValueError("no index given: pass --index DIR or set ASSISTANT_INDEX_DIR")
        return cls(**values)  # type: ignore[arg-type]
