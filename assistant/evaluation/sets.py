"""Evaluation sets: one JSON object per line.

    {"id": "q1", "question": "...", "answer": "yes", "answer_type": "yes_no_maybe", "doc_ids": ["pubmed-1"]}

``answer_type`` is one of ``yes_no_maybe``, ``extractive``, ``numeric``, ``free``;
``doc_ids`` names the indexed documents that hold the answer (may be empty). Unlike
a tuning corpus, an evaluation set must be whole: the first bad line is an error
naming it, since a silently shortened set would change the score. ``doc_ids``
written when an index named files by their server path still count: an index
that renamed them relative to their folder keeps the old ids (see
:func:`current_ids`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from assistant.evaluation.scoring import ANSWER_TYPES


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    answer: str
    answer_type: str
    doc_ids: tuple[str, ...] = ()


def parse_item(record: object) -> EvalItem:
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    for name in ("id", "question", "answer", "answer_type"):
        value = record.get(name)
        if value is None:
            raise ValueError(f"missing {name!r}")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name!r} must be a non-empty string")
    if record["answer_type"] not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {record['answer_type']!r}; expected one of {', '.join(ANSWER_TYPES)}")
    doc_ids = record.get("doc_ids", [])
    if not isinstance(doc_ids, list) or not all(isinstance(d, str) for d in doc_ids):
        raise ValueError("'doc_ids' must be a list of strings")
    return EvalItem(record["id"], record["question"].strip(), record["answer"].strip(), record["answer_type"],
                    tuple(doc_ids))


def read_eval_set(path: str | os.PathLike[str], limit: int | None = None) -> list[EvalItem]:
    """The items of a set file (the first ``limit``); ``ValueError`` naming ``path:line``."""
    where = os.fspath(path)
    items: list[EvalItem] = []
    with open(where, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                items.append(parse_item(json.loads(line)))
            except ValueError as exc:  # json.JSONDecodeError is one
                raise ValueError(f"{where}:{number}: {exc}") from None
            if limit is not None and len(items) >= limit:
                break
    if not items:
        raise ValueError(f"{where} holds no evaluation items")
    return items


def current_ids(items: Sequence[EvalItem], index: Any) -> list[EvalItem]:
    """``items`` with ``doc_ids`` the index has renamed (``Index.renamed_ids``: server paths made
    relative to their ingested folder) under their new ids; others as they are."""
    renamed = getattr(index, "renamed_ids", dict)()
    if not renamed:
        return list(items)
    return [dataclasses.replace(i, doc_ids=tuple(renamed.get(d, d) for d in i.doc_ids)) for i in items]
