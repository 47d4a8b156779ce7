"""Feedback → curated data (``assistant curate``).

A correction becomes a question-answer pair in the curated format
(:mod:`assistant.tuning.pairs`), ready for ``assistant tune``; every rating becomes a
preference row in the format of :mod:`assistant.tuning.preferences`, ready for the
prefer stage: a correction of an answer gives a chosen/rejected pair, a bare thumb an
unpaired example (the answer shown, labelled good or bad). ``prompt`` is the chat the
model saw, its passages included (the bare question for answers recorded before the
service kept prompts)::

    pairs.jsonl         {"question", "answer": <correction>, "source": "feedback:<answer id>", "id", "tags"}
    preferences.jsonl   {"prompt", "chosen", "rejected" | "completion", "label", "rating", "source", "id",
                         "answer_id", "citations", "model_text"}

Files are written whole and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def export_feedback(feedback: list[dict[str, Any]], out_dir: str | os.PathLike[str]) -> dict[str, int]:
    """Writes ``pairs.jsonl`` and ``preferences.jsonl``; returns the counts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs, preferences = [], []
    for record in feedback:
        correction = (record.get("correction") or "").strip()
        shown = record["answer"].strip()
        preference: dict[str, Any] = {
            "prompt": record.get("prompt") or record["question"], "rating": record["rating"], "source": "feedback",
            "id": f"feedback-{record['feedback_id']}", "answer_id": record["answer_id"],
            "citations": record.get("citations", []), "model_text": record.get("model_text")}
        if correction:
            pairs.append({"question": record["question"], "answer": correction,
                          "source": f"feedback:{record['answer_id']}", "id": f"feedback-{record['feedback_id']}",
                          "tags": ["feedback", record["rating"]]})
        if correction and correction != shown:
            preference |= {"chosen": correction, "rejected": shown}
        elif shown:
            preference |= {"completion": shown, "label": record["rating"] == "up"}
        else:
            continue  # nothing was shown and nothing corrected: no text to learn from
        preferences.append(preference)
    return {"feedback": len(feedback), "pairs": _write_jsonl(out / "pairs.jsonl", pairs),
            "preferences": _write_jsonl(out / "preferences.jsonl", preferences),
            "up": sum(r["rating"] == "up" for r in feedback), "down": sum(r["rating"] == "down" for r in feedback)}
