"""The curated question-answer corpus (the input of re-tuning): one JSON object per line.

    {"question": "...", "answer": "...", "context": "...", "source": "...", "tags": ["..."], "id": "..."}

``question`` and ``answer`` are required non-empty strings; the rest are
optional. A bad line (not JSON, not an object, a missing or empty required
field, a field of the wrong type) is reported as ``("path:line", reason)`` and
skipped, so one bad line never stops a build::

    pairs, problems = read_pairs("curated/qa.jsonl")
    for where, reason in problems:
        print(f"skipped {where}: {reason}")
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field

from assistant.evaluation.sets import EvalItem

REQUIRED = ("question", "answer")
OPTIONAL_STRINGS = ("context", "source", "id")


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str
    context: str | None = None
    """A passage that answers the question; when given it is the oracle, not a search hit."""
    source: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    id: str | None = None


def required_text(record: dict[str, object], name: str) -> str:
    """``record[name]`` stripped; ``ValueError`` when it is missing, not a string, or empty."""
    value = record.get(name)
    if value is None:
        raise ValueError(f"missing {name!r}")
    if not isinstance(value, str):
        raise ValueError(f"{name!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name!r} is empty")
    return value.strip()


def parse_pair(record: object) -> QAPair:
    """One decoded JSON value as a pair; ``ValueError`` saying what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    for name in REQUIRED:
        required_text(record, name)
    for name in OPTIONAL_STRINGS:
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name!r} must be a string, got {type(value).__name__}")
    tags = record.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("'tags' must be a list of strings")
    context = record.get("context")
    return QAPair(
        question=record["question"].strip(),
        answer=record["answer"].strip(),
        context=context if context and context.strip() else None,
        source=record.get("source"),
        tags=tuple(tags),
        id=record.get("id"),
    )


def read_pairs(path: str | os.PathLike[str]) -> tuple[list[QAPair], list[tuple[str, str]]]:
    """The pairs of a JSONL file and ``(f"{path}:{line}", reason)`` for each bad line.

    Blank lines are skipped silently; line numbers start at 1."""
    where = os.fspath(path)
    pairs: list[QAPair] = []
    problems: list[tuple[str, str]] = []
    with open(where, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                problems.append((f"{where}:{number}", "not valid UTF-8"))
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append((f"{where}:{number}", f"invalid JSON: {exc.msg}"))
                continue
            try:
                pairs.append(parse_pair(record))
            except ValueError as exc:
                problems.append((f"{where}:{number}", str(exc)))
    return pairs, problems


def split_holdout(pairs: list[QAPair], fraction: float, limit: int | None) -> tuple[list[QAPair], list[EvalItem]]:
    """A seeded share of the pairs as free-form eval items; the rest for training."""
    order = list(range(len(pairs)))
    random.Random(0).shuffle(order)
    n = max(1, round(len(pairs) * fraction))
    if limit is not None:
        n = min(n, limit)
    if n >= len(pairs):
        raise ValueError(f"{len(pairs)} pairs are too few to hold {n} out for the gate; add pairs or pass an eval set")
    held = set(order[:n])
    items = [EvalItem(p.id or f"pair-{i}", p.question, p.answer, "free") for i, p in enumerate(pairs) if i in held]
    return [p for i, p in enumerate(pairs) if i not in held], items
