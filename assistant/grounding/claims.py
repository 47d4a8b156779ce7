"""An answer's text as claims: its sentences, each with the passage numbers the model
cited in or right after it, and the syntax inside them (``[n]`` citations, quotations,
refusals).

    split_claims("Pangolins eat ants [1]. They have scales. [2]")
    # [Claim("Pangolins eat ants.", (1,)), Claim("They have scales.", (2,))]

Sentences end at ``.``, ``!`` or ``?`` followed by white space; a citation written
after the full stop (``… scales. [2]``) belongs to the sentence before it. Common
abbreviations (``e.g.``, ``Dr.``, ``et al.``) and decimals do not end a sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


def normalise(text: str) -> str:
    """Case-folded, with one kind of apostrophe and single spaces."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.casefold().split())


def quotes_in(answer: str) -> list[str]:
    """Spans in "…" or “…” of at least ``MIN_QUOTE_WORDS`` words; shorter ones are usually terms."""
    spans = (m.group(1) if m.group(1) is not None else m.group(2) for m in _QUOTE.finditer(answer))
    return [s.strip() for s in spans if len(s.split()) >= MIN_QUOTE_WORDS]


def quote_found(quote: str, haystack: str) -> bool:
    """Whether ``quote`` is in ``haystack`` (already :func:`normalise`-d); an ellipsis
    inside a quote marks omitted words, so each piece must appear."""
    pieces = (normalise(p).strip(_EDGE_PUNCT) for p in _ELLIPSIS.split(quote))
    return all(p in haystack for p in pieces if p)


def is_refusal(answer: str) -> bool:
    """Whether the text is the model declining ("I cannot find the answer ...")."""
    text = normalise(answer)
    return any(phrase in text for phrase in REFUSAL_PHRASES)

_CITATIONS_FIRST = re.compile(r"^\s*((?:\[[\d\s,;\-\u2013]+\]\s*)+)")
_BREAK = re.compile(r"(?<=[.!?])\s+")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "dr.", "mr.", "mrs.", "ms.", "prof.", "fig.", "al.", "approx.",
                  "no.", "st.")


@dataclass(frozen=True)
class Claim:
    text: str
    """The sentence without its citation markers."""
    cited: tuple[int, ...] = ()
    """The passage numbers the model cited for it, in order of appearance."""


def split_sentences(text: str) -> list[str]:
    """The text's pieces between a ``.``, ``!`` or ``?`` and white space, stripped (the
    plain split the passages get; answers also get :func:`split_claims`' repairs)."""
    return [piece.strip() for piece in _BREAK.split(text.strip()) if piece.strip()]


def _sentences(text: str) -> list[str]:
    pieces: list[str] = []
    for piece in split_sentences(text):
        if pieces and pieces[-1].lower().endswith(_ABBREVIATIONS):
            pieces[-1] += " " + piece  # "e.g. the ..." goes on
            continue
        moved = _CITATIONS_FIRST.match(piece)
        if moved and pieces:  # "... scales. [2] They ..." → "[2]" is the previous sentence's
            pieces[-1] += " " + moved.group(1).strip()
            piece = piece[moved.end():]
        if piece.strip():
            pieces.append(piece.strip())
    return pieces


def split_claims(answer: str) -> list[Claim]:
    """The answer's sentences in order; those without a word (a lone citation, a list
    number such as "1.") are left out."""
    claims = []
    for sentence in _sentences(answer):
        text = " ".join(strip_citations(sentence).split())
        text = re.sub(r"\s+([.,;:!?])", r"\1", text)  # "termites ." after a removed "[1]"
        if re.search(r"[^\W\d_]", text):  # a list marker ("1.") or a lone number says nothing
            claims.append(Claim(text, tuple(parse_citations(sentence))))
    return claims


def with_citations(claim_text: str, numbers: list[int]) -> str:
    """``claim_text`` with ``[n]`` markers before its final punctuation: "It does [1]."."""
    marks = "".join(f"[{n}]" for n in numbers)
    if not marks:
        return claim_text
    body = claim_text.rstrip()
    end = len(body) - len(body.rstrip(".!?"))
    return f"{body[:len(body) - end]} {marks}{body[len(body) - end:]}" if end else f"{body} {marks}"
