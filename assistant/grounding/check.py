"""The decision of what a user is shown: the claims of the model's answer that a
retrieved passage supports, each with its citation, or an honest abstention with the
closest passages.

    result = finalize(reply, passages, verifier, min_score=DEFAULT_MIN_SCORE)
    print(result.answer, result.claims, result.dropped)

Abstains when nothing was retrieved, when the best passage is not relevant enough
(``Passage.relevance`` below ``min_score``), or when no claim is supported; the
unsupported claims are never shown, and the response says which were dropped and why.

Pure Python over plain records: no torch, no web framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from assistant.grounding.answerability import Gate, answer_signals
from assistant.grounding.attribute import DroppedClaim, SupportedClaim, attribute
from assistant.grounding.claims import split_claims, with_citations
from assistant.grounding.extract import best_sentence, check_answer_mode, quoted
from assistant.grounding.passages import Passage, best_relevance, relevant_enough
from assistant.grounding.verify import SUPPORTED, Embed, Verifier

DEFAULT_MIN_SCORE = 0.3
"""Abstain when the best passage's cosine is below this (the one default; settings refer to it)."""
NOT_FOUND_MESSAGE = "The documents do not contain an answer to this question."
CLOSEST_K = 3


@dataclass
class GroundedAnswer:
    """What the user is shown, and why."""

    answer: str
    grounded: bool
    abstained_reason: str | None
    citations: list[dict[str, object]]
    closest: list[dict[str, object]]
    raw_answer: str
    claims: list[dict[str, object]] = field(default_factory=list)
    """The shown sentences: ``{text, citations, support}``."""
    dropped: list[dict[str, object]] = field(default_factory=list)
    """The sentences not shown: ``{text, reason}``."""
    answer_mode: str = "generative"
    """How the shown answer was made: the model's supported words, or a quoted passage sentence."""
    choice: dict[str, object] | None = None
    """For a choice answer: the choice, its probabilities and how they were made."""
    answerability: dict[str, object] = field(default_factory=dict)
    """The signals of an answer that passed the check, and with a calibrator its probability
    and the threshold it was held to (:mod:`.answerability`)."""

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        if out["choice"] is None:  # only choice answers carry one
            del out["choice"]
        return out


def finalize(answer_text: str, passages: Sequence[Passage], verifier: Verifier, *, min_score: float,
             threshold: float = SUPPORTED, closest_k: int = CLOSEST_K, mode: str = "generative",
             question: str = "", embed: Embed | None = None, gate: Gate | None = None,
             mean_logprob: float | None = None) -> GroundedAnswer:
    """Split ``answer_text`` into claims, verify each against the passages, attribute
    citations, and build the reply from the supported claims only. With ``mode``
    ``auto``, an answer left with no supported claim falls back to the passage sentence
    that best answers ``question`` (``extractive``: that sentence, whatever was generated).
    With a ``gate``, an answer that passed is still withheld when its calibrated
    answerability is below the gate's threshold."""
    shown = _check(answer_text, passages, verifier, min_score=min_score, threshold=threshold, closest_k=closest_k,
                   mode=mode, question=question, embed=embed)
    return apply_gate(shown, passages, gate, mean_logprob, closest_k=closest_k)


def apply_gate(shown: GroundedAnswer, passages: Sequence[Passage], gate: Gate | None, mean_logprob: float | None,
               *, closest_k: int = CLOSEST_K) -> GroundedAnswer:
    """``shown`` with its answerability signals, or, when they fall below ``gate``'s
    operating point, an abstention that says so."""
    if not shown.grounded:
        return shown
    signals = answer_signals(passages, shown.claims, len(shown.dropped), mean_logprob)
    shown.answerability = {"signals": signals}
    if gate is None:
        return shown
    passed, record = gate.judge(signals)
    shown.answerability |= record
    if passed:
        return shown
    if gate.answers_nothing:  # the calibration set had no operating point that met the target
        reason = (f"the answerability calibrator answers nothing at most {gate.max_hallucination:.0%} answers to "
                  "unanswerable questions allow (no threshold met it on the calibration set; refit on more "
                  "items or raise ASSISTANT_MAX_HALLUCINATION)")
    else:
        reason = (f"calibrated answerability {shown.answerability['probability']:.2f} (score "
                  f"{shown.answerability['score']:.2f}) is below the operating point (score "
                  f"{gate.threshold:.2f}) for at most {gate.max_hallucination:.0%} answers to unanswerable questions")
    return GroundedAnswer(NOT_FOUND_MESSAGE, False, reason, [], [p.as_citation() for p in passages[:closest_k]],
                          shown.raw_answer, [], shown.dropped + [{"text": c["text"], "reason": reason} for c in shown.claims],
                          shown.answer_mode, shown.choice, shown.answerability)


def _check(answer_text: str, passages: Sequence[Passage], verifier: Verifier, *, min_score: float,
           threshold: float, closest_k: int, mode: str, question: str, embed: Embed | None) -> GroundedAnswer:
    check_answer_mode(mode)
    reasons: list[str] = []
    kept: list[SupportedClaim] = []
    dropped: list[DroppedClaim] = []
    relevant = relevant_enough(passages, min_score)
    if not passages:
        reasons.append("no passages were retrieved")
    elif not relevant:
        reasons.append(f"best passage relevance {best_relevance(passages):.3f} is below min_score {min_score:.3f}")
    elif mode == "extractive":
        reasons.append("no passage sentence answers the question closely enough")
    else:
        claims = split_claims(answer_text)
        scores = verifier.scores([c.text for c in claims], [p.text for p in passages])
        kept, dropped = attribute(claims, passages, scores, threshold=threshold)
        if not claims:
            reasons.append("the answer is empty")
        elif not kept:
            reasons.append("no claim of the answer is supported by a passage: "
                           + "; ".join(d.reason for d in dropped[:3]))
    shown_dropped = [asdict(d) for d in dropped]
    if reasons and relevant and mode in ("auto", "extractive"):
        extract = best_sentence(question, passages, embed)
        if extract is not None:
            return GroundedAnswer(quoted(extract), True, None, [extract.passage.as_citation()], [], answer_text,
                                  [{"text": extract.sentence, "citations": [extract.passage.number],
                                    "support": extract.similarity}], shown_dropped, "extractive")
    if reasons:
        # Abstaining: nothing the model wrote is shown, only where the user might look.
        return GroundedAnswer(NOT_FOUND_MESSAGE, False, "; ".join(reasons), [],
                              [p.as_citation() for p in passages[:closest_k]], answer_text,
                              [], shown_dropped)
    by_number = {p.number: p for p in passages}
    cited = list(dict.fromkeys(n for c in kept for n in c.citations))
    text = " ".join(with_citations(c.text, list(c.citations)) for c in kept)
    return GroundedAnswer(text, True, None, [by_number[n].as_citation() for n in cited], [], answer_text,
                          [{"text": c.text, "citations": list(c.citations), "support": c.support} for c in kept],
                          shown_dropped)
