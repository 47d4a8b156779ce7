"""Citations made by the system: each claim gets the passage that supports it, whether
or not the model cited one; a claim no passage supports is dropped, with the reason.

    kept, dropped = attribute(split_claims(reply), passages, verifier.scores(texts, passage_texts))

A model-written ``[n]`` is kept when passage n supports the claim; otherwise it is
replaced by the best supporting passage, and the claim is dropped when there is none.
A quotation must appear word for word in the passage cited for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from assistant.grounding.claims import Claim, is_refusal, normalise, quote_found, quotes_in
from assistant.grounding.passages import Passage
from assistant.grounding.verify import SUPPORTED


@dataclass(frozen=True)
class SupportedClaim:
    text: str
    citations: tuple[int, ...]
    """The passage numbers shown after the sentence."""
    support: float
    """The best support among its cited passages."""
    corrected: bool = False
    """The model cited nothing, or a passage that does not support it; the system chose."""


@dataclass(frozen=True)
class DroppedClaim:
    text: str
    reason: str


def attribute(claims: Sequence[Claim], passages: Sequence[Passage], scores: np.ndarray, *,
              threshold: float = SUPPORTED) -> tuple[list[SupportedClaim], list[DroppedClaim]]:
    """Each claim kept with its citations, or dropped with why; ``scores[i, j]`` is the
    support of claim i by ``passages[j]``."""
    column = {p.number: j for j, p in enumerate(passages)}
    kept: list[SupportedClaim] = []
    dropped: list[DroppedClaim] = []
    for i, claim in enumerate(claims):
        if is_refusal(claim.text):
            dropped.append(DroppedClaim(claim.text, "the model said the documents do not contain the answer"))
            continue
        row = scores[i] if len(passages) else np.zeros(0)
        cited = [n for n in claim.cited if n in column and row[column[n]] >= threshold]
        corrected = not cited
        if corrected:
            best = int(np.argmax(row)) if len(row) else -1
            if best < 0 or row[best] < threshold:
                dropped.append(DroppedClaim(claim.text, _why_unsupported(claim, passages, row, column, threshold)))
                continue
            cited = [passages[best].number]
        texts = "\n".join(normalise(passages[column[n]].text) for n in cited)
        missing = [q for q in quotes_in(claim.text) if not quote_found(q, texts)]
        if missing:
            dropped.append(DroppedClaim(claim.text, f"quote \"{missing[0]}\" is not in the cited passage"))
            continue
        kept.append(SupportedClaim(claim.text, tuple(cited), round(float(max(row[column[n]] for n in cited)), 4),
                                   corrected))
    return kept, dropped


def _why_unsupported(claim: Claim, passages: Sequence[Passage], row: np.ndarray, column: dict[int, int],
                     threshold: float) -> str:
    if not len(row):
        return "no passages were retrieved"
    invalid = [n for n in claim.cited if n not in column]
    best = int(np.argmax(row))
    reason = f"no passage supports it (best: [{passages[best].number}] at {row[best]:.2f}, needed {threshold:.2f})"
    if invalid:
        reason += f"; it cited {', '.join(f'[{n}]' for n in invalid)}, which does not exist"
    return reason
