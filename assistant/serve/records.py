"""Answers given and the feedback on them, in the service's SQLite file.

Every answer is stored with its citations so that feedback can name it, and so
that ``assistant curate`` can later turn corrections into tuning pairs and ratings
into preferences. An answer also keeps the prompt the model saw (the chat messages,
passages included) and the model's own words before the check, so that a preference
replays exactly what the model was given and what it said.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

RATINGS = ("up", "down")


class UnknownAnswerError(KeyError):
    pass


class Records:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL").fetchall()  # finish it: an open statement pins a snapshot
        self._conn.execute("PRAGMA synchronous=FULL")  # an acknowledged feedback survives a crash
        self._conn.executescript("""
            CREATE TABLE IF NOT EXISTS answers (
                answer_id TEXT PRIMARY KEY, created REAL NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL,
                grounded INTEGER NOT NULL, citations TEXT NOT NULL, model TEXT, adapter TEXT);
            CREATE TABLE IF NOT EXISTS feedback (
                feedback_id INTEGER PRIMARY KEY AUTOINCREMENT, answer_id TEXT NOT NULL REFERENCES answers,
                created REAL NOT NULL, rating TEXT NOT NULL, correction TEXT, key_id TEXT);
        """)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(answers)").fetchall()}
        for column in ("prompt", "model_text"):  # added later: a file written before lacks them
            if column not in columns:
                self._conn.execute(f"ALTER TABLE answers ADD COLUMN {column} TEXT")

    def add_answer(self, question: str, answer: str, grounded: bool, citations: list[dict[str, Any]],
                   model: str, adapter: str | None, prompt: list[dict[str, str]] | None = None,
                   model_text: str | None = None) -> str:
        answer_id = "ans_" + secrets.token_hex(8)
        with self._lock:
            self._conn.execute(
                "INSERT INTO answers (answer_id, created, question, answer, grounded, citations, model, adapter, "
                "prompt, model_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (answer_id, time.time(), question, answer, int(grounded), json.dumps(citations), model, adapter,
                 json.dumps(prompt) if prompt is not None else None, model_text))
        return answer_id

    def add_feedback(self, answer_id: str, rating: str, correction: str | None, key_id: str | None) -> int:
        if rating not in RATINGS:
            raise ValueError(f"rating must be 'up' or 'down', got {rating!r}")
        with self._lock:
            if not self._conn.execute("SELECT 1 FROM answers WHERE answer_id = ?", (answer_id,)).fetchall():
                raise UnknownAnswerError(answer_id)
            cur = self._conn.execute(
                "INSERT INTO feedback (answer_id, created, rating, correction, key_id) VALUES (?, ?, ?, ?, ?)",
                (answer_id, time.time(), rating, correction, key_id))
        return int(cur.lastrowid or 0)

    def feedback(self) -> list[dict[str, Any]]:
        """Every feedback record joined with its answer (for curation)."""
        keys = ("feedback_id", "answer_id", "rating", "correction", "created", "question", "answer", "citations",
                "prompt", "model_text", "adapter")
        rows = self._conn.execute(
            "SELECT f.feedback_id, f.answer_id, f.rating, f.correction, f.created, a.question, a.answer, a.citations,"
            " a.prompt, a.model_text, a.adapter FROM feedback f JOIN answers a USING (answer_id)"
            " ORDER BY f.feedback_id").fetchall()
        return [dict(zip(keys, r)) | {"citations": json.loads(r[7]), "prompt": json.loads(r[8]) if r[8] else None}
                for r in rows]

    def close(self) -> None:
        self._conn.close()
