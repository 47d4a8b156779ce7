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
from collections.abc import Sequence

from assistant.grounding.claims import is_refusal, strip_citations

ANSWER_TYPES = ("yes_no_maybe", "extractive", "numeric", "free")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_DECISION = re.compile(r"\b(yes|no|maybe)\b")


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
    """The set's own metric: decision accuracy for yes/no/maybe, a number match (with its
    scale word, e.g. "1.2 million") for numeric answers, token F1 otherwise."""
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {answer_type!r}; expected one of {', '.join(ANSWER_TYPES)}")
    if answer_type == "yes_no_maybe":
        return float(yes_no_maybe(prediction) == gold.strip().lower())
    if answer_type == "numeric":
        return numeric_match(prediction, gold)
    return token_f1(prediction, gold)


# ---- numbers with a scale (TAT-QA) -------------------------------------------------------------

SCALES = {"": 1.0, "thousand": 1e3, "million": 1e6, "billion": 1e9, "percent": 1.0}
_NUMBER = re.compile(r"(\()?-?\$?\s*(\d[\d,]*(?:\.\d+)?)\)?\s*(%|percent|thousand|million|billion|bn|m|k)?\b",
                     re.IGNORECASE)
_SCALE_WORDS = {"%": "percent", "percent": "percent", "thousand": "thousand", "k": "thousand", "million": "million",
                "m": "million", "billion": "billion", "bn": "billion"}


def parse_number(text: str, default_scale: str = "") -> float | None:
    """The first number in ``text`` times its scale word (``1.5 million``, ``(3,200)`` is
    negative, ``12%``); ``default_scale`` applies when the text names none."""
    match = _NUMBER.search(strip_citations(text))
    if match is None:
        return None
    value = float(match.group(2).replace(",", ""))
    if match.group(1) or match.group(0).lstrip().startswith("-"):
        value = -value
    scale = _SCALE_WORDS.get((match.group(3) or "").lower(), default_scale)
    return value * SCALES[scale]


def numeric_match(prediction: str, gold: str, scale: str = "", *, rel_tol: float = 5e-3) -> float:
    """1.0 when the prediction's number equals the gold number in the gold scale (an
    answer of "1.5 million" matches gold "1,500" with scale "thousand", and gold
    "-12.6 million" is matched by "-12.6"), within ``rel_tol``; a prediction without a
    scale word is read in the gold scale."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {', '.join(repr(s) for s in SCALES)}")
    match = _NUMBER.search(strip_citations(gold))
    gold_scale = _SCALE_WORDS.get((match.group(3) or "").lower(), scale) if match else scale
    want = parse_number(gold, scale)
    got = parse_number(prediction, gold_scale)
    if want is None or got is None:
        return 0.0
    return float(abs(got - want) <= rel_tol * max(abs(want), 1e-9))


# ---- long answers (MedQuAD) ------------------------------------------------------------------------


def rouge_l(prediction: str, gold: str) -> float:
    """ROUGE-L F-measure: the longest common subsequence of normalised tokens."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    previous = [0] * (len(ref) + 1)
    for p in pred:
        current = [0]
        for j, r in enumerate(ref, start=1):
            current.append(previous[j - 1] + 1 if p == r else max(previous[j], current[j - 1]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def second_score(prediction: str, gold: str, answer_type: str) -> tuple[str, float] | None:
    """The other metric the sets report: exact match for extractive answers (for numbers
    the scaled number match, which is exact), ROUGE-L for free answers; yes/no/maybe has none."""
    if answer_type == "extractive":
        return "exact_match", exact_match(prediction, gold)
    if answer_type == "numeric":
        return "exact_match", numeric_match(prediction, gold)
    if answer_type == "free":
        return "rouge_l", rouge_l(prediction, gold)
    return None


# ---- grounding -------------------------------------------------------------------------------------

_STOPWORDS = frozenset("""a an the and or but if of to in on at by for with from as is are was were be been being it its
this that these those there here which who whom what when where why how not no yes can could may might will would shall
should do does did has have had than then so such into about over under also more most other some any each both all
i you he she we they them their our your his her my me us very just only own same too""".split())


def content_words(text: str) -> list[str]:
    return [w for w in normalize_answer(text).split() if w not in _STOPWORDS]


def support(answer: str, passages: list[str]) -> float:
    """Share of the answer's content words found in ``passages`` (the cited ones): 1.0
    when every word is backed, 0.0 when none is; an answer without content words is 1.0."""
    words = content_words(answer)
    if not words:
        return 1.0
    backed = set(normalize_answer(" ".join(passages)).split())
    return sum(w in backed for w in words) / len(words)


def holds_answer(passage: str, gold: str) -> bool:
    """Whether a passage contains the gold answer (normalised, as a token run)."""
    want = normalize_answer(gold)
    return bool(want) and f" {want} " in f" {normalize_answer(passage)} "


def citation_precision(cited_passages: list[str], gold: str) -> float | None:
    """1.0 when some cited passage holds the gold answer, 0.0 when none does, None when
    nothing is cited (an answer without citations is not counted)."""
    if not cited_passages:
        return None
    return float(any(holds_answer(p, gold) for p in cited_passages))


def mean(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are not None, to 4 places (None when there are none)."""
    kept = [v for v in values if v is not None]
    return round(sum(kept) / len(kept), 4) if kept else None


def macro_f1(gold: Sequence[str], predicted: Sequence[str | None]) -> float | None:
    """The mean over the gold labels of each label's F1 (an abstention matches none): a
    decision rule that always says "yes" scores about a third of what its accuracy suggests."""
    gold = [g.strip().lower() for g in gold]
    labels = sorted(set(gold))
    if not labels:
        return None
    scores = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return round(sum(scores) / len(scores), 4)


def answers_something(answer: str) -> bool:
    """Whether the model's words are an answer: not empty and not a refusal (on a context
    that does not hold the answer, a hallucination)."""
    return bool(answer.strip()) and not is_refusal(answer)
