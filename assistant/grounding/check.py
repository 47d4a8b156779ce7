"""The post-check that decides whether a model's answer may be shown.

    result = finalize(reply, passages, min_score=DEFAULT_MIN_SCORE)
    print(result.answer, result.citations)

An answer is shown only when it cites existing passages as ``[n]``, every
quotation in it appears verbatim in a cited passage, and the best passage is
relevant enough (``Passage.relevance`` at least ``min_score``); otherwise the user
gets ``NOT_FOUND_MESSAGE`` and the closest passages, never the model's text.

Pure Python: no torch, no web framework.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from assistant.grounding.passages import Passage

DEFAULT_MIN_SCORE = 0.3
"""Abstain when the best passage's cosine is below this (the one default; settings refer to it)."""
NOT_FOUND_MESSAGE = "The documents do not contain an answer to this question."
CLOSEST_K = 3
MIN_QUOTE_WORDS = 3
MAX_RANGE = 50  # a range wider than this ("[1-9999]") is read as its two ends only

# Phrases by which a model declines; matched after normalisation. Kept narrow
# because a grounded answer may well say "does not contain" about its subject.
REFUSAL_PHRASES = (
    "not in the documents", "not in the passages", "not in the provided",
    "cannot find", "can't find", "could not find", "couldn't find", "unable to find",
    "i don't know", "i do not know",
    "documents do not contain", "documents don't contain",
    "passages do not contain", "passages don't contain",
)

_CITATION = re.compile(r"\[(\s*\d+\s*(?:[-\u2013,;]\s*\d+\s*)*)\]")
_CITATION_AND_SPACE = re.compile(r"\s*" + _CITATION.pattern)
_RANGE = re.compile(r"(\d+)\s*[-\u2013]\s*(\d+)")
_QUOTE = re.compile(r"\u201c([^\u201d]*)\u201d|\"([^\"]*)\"")
_ELLIPSIS = re.compile(r"\.\.\.|\u2026")
_EDGE_PUNCT = " \t\n.,;:!?'\u2018\u2019"


def strip_citations(text: str) -> str:
    """``text`` without its ``[n]`` citations (each with the space before it)."""
    return _CITATION_AND_SPACE.sub("", text)


def parse_citations(answer: str) -> list[int]:
    """Numbers cited as ``[n]``, ``[n, m]``, ``[n][m]`` or ``[n-m]``; first appearance, no repeats."""
    seen: dict[int, None] = {}
    for match in _CITATION.finditer(answer):
        for part in re.split(r"[,;]", match.group(1)):
            rng = _RANGE.fullmatch(part.strip())
            if rng is None:
                seen.setdefault(int(part), None)
                continue
            lo, hi = int(rng.group(1)), int(rng.group(2))
            numbers = range(lo, hi + 1) if 0 <= hi - lo <= MAX_RANGE else (lo, hi)
            for n in numbers:
                seen.setdefault(n, None)
    return list(seen)


def _normalise(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.casefold().split())


def quotes_in(answer: str) -> list[str]:
    """Spans in "…" or “…” of at least ``MIN_QUOTE_WORDS`` words; shorter ones are usually terms."""
    spans = (m.group(1) if m.group(1) is not None else m.group(2) for m in _QUOTE.finditer(answer))
    return [s.strip() for s in spans if len(s.split()) >= MIN_QUOTE_WORDS]


def _quote_found(quote: str, haystack: str) -> bool:
    # An ellipsis inside a quote marks omitted words: each piece must appear.
    pieces = (_normalise(p).strip(_EDGE_PUNCT) for p in _ELLIPSIS.split(quote))
    return all(p in haystack for p in pieces if p)


def is_refusal(answer: str) -> bool:
    text = _normalise(answer)
    return any(phrase in text for phrase in REFUSAL_PHRASES)


@dataclass
class Verdict:
    grounded: bool
    reasons: list[str] = field(default_factory=list)
    citations: list[Passage] = field(default_factory=list)
    invalid_citations: list[int] = field(default_factory=list)
    unsupported_quotes: list[str] = field(default_factory=list)


def check_answer(answer: str, passages: Sequence[Passage], *, min_score: float) -> Verdict:
    """Every reason not to show ``answer``; it is grounded when there is none."""
    by_number = {p.number: p for p in passages}
    cited = parse_citations(answer)
    verdict = Verdict(
        grounded=False,
        citations=[by_number[n] for n in cited if n in by_number],
        invalid_citations=[n for n in cited if n not in by_number],
    )
    reasons = verdict.reasons
    if not passages:
        reasons.append("no passages were retrieved")
    else:
        best = max(p.relevance for p in passages)
        if best < min_score:
            reasons.append(f"best passage relevance {best:.3f} is below min_score {min_score:.3f}")
    if is_refusal(answer):
        reasons.append("the model said the documents do not contain the answer")
    if verdict.invalid_citations:
        listed = ", ".join(f"[{n}]" for n in verdict.invalid_citations)
        reasons.append(f"cited passage(s) {listed} do not exist; there are {len(passages)} passages")
    if not verdict.citations:
        reasons.append("the answer cites no passage")
    haystack = "\n".join(_normalise(p.text) for p in verdict.citations)
    verdict.unsupported_quotes = [q for q in quotes_in(answer) if not _quote_found(q, haystack)]
    for quote in verdict.unsupported_quotes:
        reasons.append(f"quote \"{quote}\" is not in the cited passages")
    verdict.grounded = not reasons
    return verdict


@dataclass
class GroundedAnswer:
    """What the user is shown, and why."""

    answer: str
    grounded: bool
    abstained_reason: str | None
    citations: list[dict[str, object]]
    closest: list[dict[str, object]]
    raw_answer: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def finalize(answer_text: str, passages: Sequence[Passage], *, min_score: float,
             closest_k: int = CLOSEST_K) -> GroundedAnswer:
    """Check ``answer_text`` and build the reply: the model's words only when grounded."""
    verdict = check_answer(answer_text, passages, min_score=min_score)
    if verdict.grounded:
        return GroundedAnswer(answer_text.strip(), True, None,
                              [p.as_citation() for p in verdict.citations], [], answer_text)
    # Abstaining: nothing the model wrote is shown, only where the user might look.
    return GroundedAnswer(NOT_FOUND_MESSAGE, False, "; ".join(verdict.reasons), [],
                          [p.as_citation() for p in passages[:closest_k]], answer_text)
