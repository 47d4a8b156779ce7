"""Answer scores against a gold answer, with no judge model.

    token_f1("The cat sat [1].", "a cat sat")        # 1.0: SQuAD normalisation, citations dropped
    yes_no_maybe("Yes. The trial shows ... [2]")     # "yes"
    score_answer(text, gold, "yes_no_maybe")         # 1.0 or 0.0

Normalisation is SQuAD's (lowercase, no punctuation, no articles, single spaces),
so numbers are comparable with the published COVID-QA and PubMedQA figures.
"""

from __future__ import annotations

import re
import string
from collections import Counter

ANSWER_TYPES = ("yes_no_maybe", "extractive", "numeric", "free")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CITATION = re.compile(r"\[\s*\d+(?:\s*[-\u2013,;]\s*\d+)*\s*\]")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_DECISION = re.compile(r"\b(yes|no|maybe)\b")


def strip_citations(text: str) -> str:
    return _CITATION.sub("", text)


def normalize_answer(text: str) -> str:
    text = strip_citations(text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Harmonic mean of token precision and recall after normalisation; two empty
    answers agree (1.0), one empty answer scores 0."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def yes_no_maybe(text: str) -> str | None:
    """The first yes / no / maybe word of an answer, None when it has none."""
    match = _DECISION.search(strip_citations(text).lower())
    return match.group(1) if match else None


def score_answer(prediction: str, gold: str, answer_type: str) -> float:
    """The set's own metric: decision accuracy for yes/no/maybe, token F1 otherwise."""
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r}; expected one of {', '.join(ANSWER_TYPES)}")
    if answer_type == "yes_no_maybe":
        return float(yes_no_maybe(prediction) == gold.strip().lower())
    return token_f1(prediction, gold)
