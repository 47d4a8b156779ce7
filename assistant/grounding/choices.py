"""Choice answers: the choice (``yes`` / ``no`` / ``maybe`` …) the model finds most
likely given the passages, instead of free text to verify.

    scored = score_choices(generator, question, passages, ["yes", "no", "maybe"], adapter=None)
    scored.answer, scored.probabilities          # "yes", {"yes": 0.61, "no": 0.27, "maybe": 0.12}

Each choice is scored by its length-normalised log-likelihood (the mean over its tokens)
as the assistant's reply to the serving prompt; the prompt runs once and every choice
continues from its cached keys and values.
Contextual calibration (Zhao et al., 2021) then divides each choice's probability by its
probability after a content-free input (the same prompt with "N/A" for the question and
the passage), which removes the model's prior for a choice whatever the question.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from assistant.generation.base import TextGenerator
from assistant.grounding.check import GroundedAnswer
from assistant.grounding.choice_head import ChoiceHead
from assistant.grounding.claims import with_citations
from assistant.grounding.extract import best_sentence
from assistant.grounding.passages import Passage, build_messages, make_passage
from assistant.grounding.verify import Embed

MAX_CHOICES = 20
CONTENT_FREE = "N/A"


def check_choices(choices: Sequence[str]) -> list[str]:
    """The choices, stripped; ``ValueError`` saying what is wrong with them."""
    cleaned = [c.strip() if isinstance(c, str) else c for c in choices]
    if not cleaned:
        raise ValueError("choices is empty; give at least two, e.g. [\"yes\", \"no\", \"maybe\"]")
    if any(not isinstance(c, str) or not c for c in cleaned):
        raise ValueError("every choice must be a non-empty string")
    if len(cleaned) > MAX_CHOICES:
        raise ValueError(f"{len(cleaned)} choices; at most {MAX_CHOICES} are scored")
    folded = [c.casefold() for c in cleaned]
    repeated = sorted({c for c in cleaned if folded.count(c.casefold()) > 1})
    if repeated:
        raise ValueError(f"choices repeat: {', '.join(repeated)}")
    if len(cleaned) < 2:
        raise ValueError("one choice is no choice; give at least two")
    return cleaned


def choice_messages(question: str, passages: Sequence[Passage], choices: Sequence[str]) -> list[dict[str, str]]:
    ask = f"{question.strip()}\nAnswer with one of: {', '.join(choices)}."
    return build_messages(ask, passages)


@dataclass(frozen=True)
class ScoredChoices:
    answer: str
    probabilities: dict[str, float]
    """Calibrated, summing to 1."""
    raw: dict[str, float]
    """Before calibration: the softmax of the mean log-likelihoods."""
    mean_logprob: float | None = None
    """The answer's mean token log-probability (an answerability signal)."""
    mean_logprobs: tuple[float, ...] = ()
    """Every choice's, in the order given: what a choice head is fitted on."""
    method: str = "contextual"
    """How the probabilities were made: ``contextual`` calibration, or a fitted ``head``."""

    def as_dict(self) -> dict[str, object]:
        return {"answer": self.answer, "probabilities": self.probabilities, "uncalibrated": self.raw,
                "method": self.method, "mean_logprobs": [round(x, 4) for x in self.mean_logprobs]}


def _softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def calibrate(mean_logprobs: Sequence[float], content_free: Sequence[float]) -> list[float]:
    """Probabilities divided by the content-free ones, renormalised."""
    p, q = _softmax(mean_logprobs), _softmax(content_free)
    ratios = [a / max(b, 1e-12) for a, b in zip(p, q, strict=True)]
    return [r / sum(ratios) for r in ratios]


_CONTENT_FREE: weakref.WeakKeyDictionary[Any, dict[tuple[str | None, tuple[str, ...]], list[float]]] = (
    weakref.WeakKeyDictionary())


def content_free_scores(generator: TextGenerator, choices: Sequence[str], adapter: str | None) -> list[float]:
    """The choices' mean log-likelihoods after the content-free prompt: the same for every
    question, so computed once per generator, adapter and choice list (an adapter's name
    names fixed weights: a retune registers a new name)."""
    cache = _CONTENT_FREE.setdefault(generator, {})
    key = (adapter, tuple(choices))
    if key not in cache:
        empty = generator.chat_prompt(choice_messages(CONTENT_FREE, [make_passage(1, "", "", CONTENT_FREE, 0.0)],
                                                      choices))
        cache[key] = [-sum(r) / len(r) for r in generator.choice_nlls(empty, choices, adapter=adapter)]
    return list(cache[key])


def score_choices(generator: TextGenerator, question: str, passages: Sequence[Passage], choices: Sequence[str], *,
                  adapter: str | None, calibrated: bool = True, head: ChoiceHead | None = None) -> ScoredChoices:
    """Every choice after the question's prompt (one pass over the prompt); the
    probabilities from ``head`` when it was fitted for these choices, else by contextual
    calibration (the choices after the content-free prompt)."""
    choices = check_choices(choices)
    prompt = generator.chat_prompt(choice_messages(question, passages, choices))
    asked = [-sum(r) / len(r) for r in generator.choice_nlls(prompt, choices, adapter=adapter)]
    method = "head" if head is not None and head.fits(choices) else "contextual" if calibrated else "none"
    if method == "head":
        probabilities = head.probabilities(asked)  # type: ignore[union-attr]
    elif method == "contextual":
        probabilities = calibrate(asked, content_free_scores(generator, choices, adapter))
    else:
        probabilities = _softmax(asked)
    best = max(range(len(choices)), key=probabilities.__getitem__)
    return ScoredChoices(choices[best], {c: round(p, 4) for c, p in zip(choices, probabilities, strict=True)},
                         {c: round(p, 4) for c, p in zip(choices, _softmax(asked), strict=True)}, asked[best],
                         tuple(asked), method)


def choice_answer(scored: ScoredChoices, question: str, passages: Sequence[Passage], raw_text: str,
                  embed: Embed | None) -> GroundedAnswer:
    """The reply for a choice: the choice, with the passage sentence that best supports
    it (the question and the choice read together) as its citation."""
    found = best_sentence(f"{question} {scored.answer}", passages, embed, min_similarity=0.0)
    cited = found.passage if found is not None else max(passages, key=lambda p: p.relevance)
    support = scored.probabilities[scored.answer]
    return GroundedAnswer(with_citations(scored.answer, [cited.number]), True, None, [cited.as_citation()], [],
                          raw_text, [{"text": scored.answer, "citations": [cited.number], "support": support}], [],
                          "choice", choice=scored.as_dict())
