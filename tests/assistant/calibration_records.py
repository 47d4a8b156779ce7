"""Answer records of a calibration run, made up with a known shape (shared by the
answerability and calibration tests)."""

from __future__ import annotations

import random


def synthetic_records(n: int = 120, seed: int = 0) -> list[dict]:
    """Answerable answers (gold retrieved) have higher cosines and support than unanswerable
    ones, with overlap, as in the real runs."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        answerable = i % 2 == 0
        dense = rng.gauss(0.7 if answerable else 0.5, 0.1)
        support = rng.gauss(0.8 if answerable else 0.6, 0.15)
        signals = {"dense_best": dense, "dense_margin": rng.random() * 0.1, "bm25_best": rng.gauss(8, 2),
                   "bm25_margin": rng.random(), "claim_support": support, "claims_kept": rng.random(),
                   "mean_logprob": None if i % 7 == 0 else rng.gauss(-0.6, 0.2)}
        records.append({"id": f"q{i // 2}", "set": "s", "system": "base+rag",
                        "split": "answerable" if answerable else "unanswerable", "gold_retrieved": answerable,
                        "shown": rng.random() < 0.8, "shown_score": 0.5 if answerable else 0.0, "score": 0.4,
                        "cites_gold": 1.0 if answerable else None, "answerability": {"signals": signals}})
    return records
