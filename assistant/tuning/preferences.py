"""Preference data for the ``prefer`` stage: one JSON object per line, of two kinds.

    {"prompt": [{"role": "system", ...}, {"role": "user", ...}], "chosen": "...", "rejected": "..."}
    {"prompt": [...], "completion": "...", "label": true}

A *pair* (chosen over rejected) trains DPO; an *unpaired* example (a completion
labelled good or bad, a thumb) trains KTO. ``prompt`` is the chat the model saw — the
serving prompt with its passages, as ``assistant curate`` and the synthetic pairs
write it — or a bare string, taken as the user's message. ``source`` and ``id`` are
optional strings. The rows ``assistant curate`` wrote before the prompt was kept
(``prompt`` a bare question, ``response`` and ``rating``) are read as unpaired
examples.

Unlike the curated pairs, a bad row is not skipped: preferences are few and each one
moves the model, so :func:`read_preferences` raises :class:`PreferenceFileError`
naming every bad line (missing fields, empty texts, chosen equal to rejected, a
prompt over the token limit), and nothing trains until the file is fixed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from assistant.tuning.pairs import required_text

Messages = tuple[tuple[str, str], ...]
"""A chat as (role, content) pairs: hashable, so rows can be deduplicated."""
ROLES = ("system", "user", "assistant")
SHOWN_ERRORS = 10


class PreferenceFileError(ValueError):
    """Bad rows in a preference file; ``problems`` holds ``("path:line", reason)`` for each."""

    def __init__(self, problems: Sequence[tuple[str, str]]):
        self.problems = list(problems)
        lines = [f"{where}: {reason}" for where, reason in self.problems[:SHOWN_ERRORS]]
        more = len(self.problems) - SHOWN_ERRORS
        super().__init__("bad preference rows (nothing was trained; fix or remove them):\n  " + "\n  ".join(lines)
                         + (f"\n  … and {more} more" if more > 0 else ""))


@dataclass(frozen=True)
class PreferencePair:
    prompt: Messages
    chosen: str
    rejected: str
    source: str = "curated"
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": messages_to_list(self.prompt), "chosen": self.chosen, "rejected": self.rejected,
                "source": self.source} | ({"id": self.id} if self.id else {})


@dataclass(frozen=True)
class UnpairedExample:
    prompt: Messages
    completion: str
    label: bool
    """True: a good completion (thumbs up); False: a bad one."""
    source: str = "curated"
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": messages_to_list(self.prompt), "completion": self.completion, "label": self.label,
                "source": self.source} | ({"id": self.id} if self.id else {})


@dataclass
class PreferenceData:
    pairs: list[PreferencePair]
    unpaired: list[UnpairedExample]

    def __len__(self) -> int:
        return len(self.pairs) + len(self.unpaired)

    def extend(self, other: PreferenceData) -> None:
        self.pairs += other.pairs
        self.unpaired += other.unpaired

    def write(self, path: str | os.PathLike[str]) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for row in [*self.pairs, *self.unpaired]:
                f.write(json.dumps(row.to_dict(), ensure_ascii=False) + "\n")


def messages_to_list(messages: Messages) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in messages]


def as_messages(prompt: object) -> Messages:
    """A prompt field as a chat; ``ValueError`` saying what is wrong."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("'prompt' is empty")
        return (("user", prompt.strip()),)
    if not isinstance(prompt, list) or not prompt:
        raise ValueError("'prompt' must be a non-empty string or a non-empty list of chat messages")
    out = []
    for n, message in enumerate(prompt, start=1):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            raise ValueError(f"'prompt' message {n} must be an object with string 'role' and 'content'")
        if message["role"] not in ROLES:
            raise ValueError(f"'prompt' message {n} has role {message['role']!r}; expected one of {', '.join(ROLES)}")
        out.append((message["role"], message["content"]))
    if out[-1][0] != "user":
        raise ValueError("'prompt' must end with the user's message")
    if not any(content.strip() for _, content in out):
        raise ValueError("'prompt' is empty")
    return tuple(out)


def parse_preference(record: object, default_source: str = "curated") -> PreferencePair | UnpairedExample:
    """One decoded JSON value as a pair or an unpaired example; ``ValueError`` saying what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "prompt" not in record:
        raise ValueError("missing 'prompt'")
    prompt = as_messages(record["prompt"])
    source, row_id = record.get("source", default_source), record.get("id")
    for name, value in (("source", source), ("id", row_id)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name!r} must be a string, got {type(value).__name__}")
    if "chosen" in record or "rejected" in record:
        chosen, rejected = required_text(record, "chosen"), required_text(record, "rejected")
        if chosen == rejected:
            raise ValueError("'chosen' and 'rejected' are the same text: the pair teaches nothing")
        return PreferencePair(prompt, chosen, rejected, source, row_id)
    if "completion" in record:
        label = record.get("label")
        if not isinstance(label, bool):
            raise ValueError("'label' must be true (a good completion) or false (a bad one)")
        return UnpairedExample(prompt, required_text(record, "completion"), label, source, row_id)
    if "response" in record and "rating" in record:  # a feedback export written before prompts were kept
        if record["rating"] not in ("up", "down"):
            raise ValueError(f"'rating' must be 'up' or 'down', got {record['rating']!r}")
        return UnpairedExample(prompt, required_text(record, "response"), record["rating"] == "up", "feedback", row_id)
    raise ValueError("a row needs 'chosen' and 'rejected' (a pair) or 'completion' and 'label' (one rated answer)")


def read_preferences(path: str | os.PathLike[str], *, count_tokens: Callable[[Messages], int] | None = None,
                     max_prompt_tokens: int | None = None, default_source: str = "curated") -> PreferenceData:
    """Every row of a JSONL preference file, or :class:`PreferenceFileError` naming each
    bad line. With ``count_tokens``, a prompt longer than ``max_prompt_tokens`` is bad too."""
    where = os.fspath(path)
    data = PreferenceData([], [])
    problems: list[tuple[str, str]] = []
    with open(where, "rb") as f:
        for number, raw in enumerate(f, start=1):
            at = f"{where}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                problems.append((at, "not valid UTF-8"))
                continue
            if not line.strip():
                continue
            try:
                row = parse_preference(json.loads(line), default_source)
            except json.JSONDecodeError as exc:
                problems.append((at, f"invalid JSON: {exc.msg}"))
                continue
            except ValueError as exc:
                problems.append((at, str(exc)))
                continue
            if count_tokens is not None and max_prompt_tokens is not None:
                tokens = count_tokens(row.prompt)
                if tokens > max_prompt_tokens:
                    problems.append((at, f"the prompt is {tokens} tokens, over max_prompt_tokens={max_prompt_tokens}"))
                    continue
            (data.pairs if isinstance(row, PreferencePair) else data.unpaired).append(row)  # type: ignore[arg-type]
    if problems:
        raise PreferenceFileError(problems)
    return data


def prompt_text(messages: Messages) -> str:
    """The prompt's words, for deduplication and decontamination."""
    return "\n".join(content for _, content in messages)


def dedupe(data: PreferenceData, eval_texts: Iterable[str], *, ngram: int = 13) -> tuple[PreferenceData, dict[str, int]]:
    """Exact duplicates out (same prompt and answers, after the Rust core's
    normalization), then rows sharing a ``ngram``-word run with an evaluation text."""
    from indexer import native

    rows: list[PreferencePair | UnpairedExample] = [*data.pairs, *data.unpaired]
    if not rows:
        return PreferenceData([], []), {"exact_duplicates": 0, "contaminated": 0}
    answers = [f"{r.chosen}\n{r.rejected}" if isinstance(r, PreferencePair) else f"{r.completion}\n{r.label}"
               for r in rows]
    keys = native.normalize([f"{prompt_text(r.prompt)}\n\n{a}" for r, a in zip(rows, answers, strict=True)],
                            lowercase=True)
    exact = native.exact_dedup(keys, normalize=False)
    kept = [r for r, keep in zip(rows, exact.keep, strict=True) if keep]
    contaminated = 0
    evals = list(eval_texts)
    if evals and kept:
        # the question and the answers are checked, not the passages: a passage of the
        # corpus may well be an evaluation item's document
        texts = [_question(r.prompt) for r in kept] + [
            r.chosen if isinstance(r, PreferencePair) else r.completion for r in kept]
        overlaps, _ = native.decontaminate(texts, evals, ngram=ngram, min_words=min(8, ngram))
        dirty = {o.train_index % len(kept) for o in overlaps}
        contaminated = len(dirty)
        kept = [r for i, r in enumerate(kept) if i not in dirty]
    out = PreferenceData([r for r in kept if isinstance(r, PreferencePair)],
                         [r for r in kept if isinstance(r, UnpairedExample)])
    return out, {"exact_duplicates": exact.num_duplicates, "contaminated": contaminated}


def _question(messages: Messages) -> str:
    """The question of a serving prompt (the user turn after "Question:"), else the user turn."""
    user = messages[-1][1]
    marker = user.rfind("Question:")
    return user[marker + len("Question:"):].strip() if marker >= 0 else user
