"""Reading JSONL files record by record, reporting bad lines instead of failing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAX_REPORTED = 20  # bad lines listed individually; the rest are only counted


@dataclass
class BadLines:
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, line_no: int, reason: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_REPORTED:
            self.examples.append(f"line {line_no}: {reason}")


def iter_text_records(path: Path, text_field: str, bad: BadLines) -> Iterator[tuple[int, str | None, int]]:
    """Yields ``(line_no, text, bytes_read)`` for every line; ``text`` is None
    for blank lines and for bad ones, which are recorded in ``bad``."""
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            size = len(raw)
            if not raw.strip():
                yield line_no, None, size  # keeps progress honest; skipped by the caller
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                bad.add(line_no, f"not valid JSON ({exc.__class__.__name__}: {exc})")
                yield line_no, None, size
                continue
            if not isinstance(record, dict):
                bad.add(line_no, f"expected a JSON object, got {type(record).__name__}")
                yield line_no, None, size
                continue
            value = record.get(text_field)
            if not isinstance(value, str):
                what = "missing" if value is None else f"a {type(value).__name__}, not a string"
                bad.add(line_no, f"field {text_field!r} is {what}")
                yield line_no, None, size
                continue
            yield line_no, value, size
