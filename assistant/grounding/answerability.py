"""Calibrated answerability: how likely it is that the retrieved passages hold the
answer about to be shown, from signals that exist at answer time, and the decision to
show it or abstain at an operating point chosen by the rate of wrong answers it buys.

    calibrator = Calibrator.load(index_dir / CALIBRATOR_FILE, model="SmolLM2", embedder="minilm")
    gate = calibrator.gate(max_hallucination=0.10)
    signals = answer_signals(passages, claims, dropped, mean_logprob)
    passed, record = gate.judge(signals)   # record: {"probability": 0.83, "threshold": 0.41, ...}
    if not passed: abstain

The model is a logistic regression over standardised signals followed by an isotonic
map of its score to a probability, fitted by :mod:`assistant.evaluation.calibrate`
(scikit-learn) and stored as plain JSON numbers, so that answering needs neither
scikit-learn nor pickle (a pickled file would run code when loaded). The stored
risk–coverage curve of the calibration set maps a target hallucination rate to a
threshold on the regression's score, so the service can move its operating point
without refitting. The threshold is on the score, not the probability, because the
isotonic map is a staircase: with a few dozen calibration answers its steps are wide,
and a threshold between two steps would have to give up a whole step of coverage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.grounding.passages import Passage
from assistant.json_files import read_json, write_json_atomically

CALIBRATOR_FILE = "answerability.json"
"""Stored beside the index it was fitted on."""
DEFAULT_MAX_HALLUCINATION = 0.10
NEVER = 1e9
"""The threshold that keeps nothing: where no operating point meets the target."""
SIGNALS = ("dense_best", "dense_margin", "bm25_best", "bm25_margin", "claim_support", "claims_kept",
           "mean_logprob")
FORMAT = 1


class CalibratorMismatchError(ValueError):
    """A calibrator fitted for another index or model: its probabilities would mean nothing here."""


def answer_signals(passages: Sequence[Passage], claims: Sequence[Mapping[str, Any]], dropped: int,
                   mean_logprob: float | None) -> dict[str, float | None]:
    """The signals of one answer: the best dense cosine and its margin over the second,
    the same for BM25 (0 where BM25 did not find a passage), the best support of a shown
    claim, the share of the answer's claims shown, and the generator's mean token
    log-probability (None where the backend does not report it)."""
    dense = sorted((p.dense_score or 0.0 for p in passages), reverse=True) + [0.0, 0.0]
    bm25 = sorted((p.hit.bm25_score or 0.0 for p in passages), reverse=True) + [0.0, 0.0]
    supports = [float(c.get("support") or 0.0) for c in claims]
    total = len(claims) + dropped
    return {"dense_best": dense[0], "dense_margin": dense[0] - dense[1], "bm25_best": bm25[0],
            "bm25_margin": bm25[0] - bm25[1], "claim_support": max(supports, default=0.0),
            "claims_kept": len(claims) / total if total else 0.0, "mean_logprob": mean_logprob}


@dataclass(frozen=True)
class OperatingPoint:
    """One threshold on the regression's score over the calibration set: the share of
    unanswerable questions it still answers (hallucination) and of answerable ones it
    answers (coverage)."""

    threshold: float
    hallucination: float
    coverage: float


@dataclass(frozen=True)
class Gate:
    """A calibrator at one operating point."""

    calibrator: Calibrator
    threshold: float
    max_hallucination: float

    @property
    def answers_nothing(self) -> bool:
        return self.threshold >= NEVER

    def passes(self, signals: Mapping[str, float | None]) -> bool:
        return self.judge(signals)[0]

    def judge(self, signals: Mapping[str, float | None]) -> tuple[bool, dict[str, Any]]:
        """Whether the answer passes, and for the record its probability, the probability
        at the operating point (None when it answers nothing) and the scores compared."""
        score = self.calibrator.score(signals)
        return score >= self.threshold, {
            "probability": round(self.calibrator.to_probability(score), 4),
            "threshold": None if self.answers_nothing else round(self.calibrator.to_probability(self.threshold), 4),
            "score": round(score, 4), "score_threshold": None if self.answers_nothing else round(self.threshold, 4),
            "max_hallucination": self.max_hallucination}


@dataclass(frozen=True)
class Calibrator:
    signals: tuple[str, ...]
    center: tuple[float, ...]
    """The standardiser's means; also what stands in for a signal the backend did not report."""
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    iso_x: tuple[float, ...]
    """The isotonic map from the regression's score to a probability (interpolated, clipped)."""
    iso_y: tuple[float, ...]
    curve: tuple[OperatingPoint, ...]
    """Out-of-fold operating points on the calibration set, by rising threshold."""
    fitted: dict[str, Any] = field(default_factory=dict)
    """What it was fitted for and on: model, adapter, embedder, sets, item counts."""

    def score(self, signals: Mapping[str, float | None]) -> float:
        total = self.intercept
        for name, mean, scale, weight in zip(self.signals, self.center, self.scale, self.coef, strict=True):
            value = signals.get(name)
            x = mean if value is None or not math.isfinite(value) else float(value)
            total += weight * (x - mean) / scale
        return total

    def probability(self, signals: Mapping[str, float | None]) -> float:
        return self.to_probability(self.score(signals))

    def to_probability(self, score: float) -> float:
        return _interpolate(score, self.iso_x, self.iso_y)

    def threshold_for(self, max_hallucination: float) -> float:
        """The lowest score threshold whose hallucination on the calibration set is at most
        the target (the most coverage that target allows); :data:`NEVER` when none meets
        it, so the service abstains rather than miss its target silently."""
        if not 0.0 <= max_hallucination <= 1.0:
            raise ValueError(f"max_hallucination must be between 0 and 1, got {max_hallucination}")
        for point in self.curve:
            if point.hallucination <= max_hallucination:
                return point.threshold
        return NEVER

    def gate(self, max_hallucination: float = DEFAULT_MAX_HALLUCINATION) -> Gate:
        return Gate(self, self.threshold_for(max_hallucination), max_hallucination)

    def check_matches(self, *, model: str, embedder: str) -> None:
        for what, mine, theirs in (("model", self.fitted.get("model"), model),
                                   ("embedder", self.fitted.get("embedder"), embedder)):
            if mine != theirs:
                raise CalibratorMismatchError(
                    f"the answerability calibrator was fitted for {what} {mine!r}, but this service uses {theirs!r}; "
                    "refit it with `assistant calibrate` or remove the file")

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibrator:
        if data.get("format") != FORMAT:
            raise ValueError(f"unsupported calibrator format {data.get('format')!r} (expected {FORMAT})")
        try:
            calibrator = cls(tuple(data["signals"]), tuple(map(float, data["center"])),
                             tuple(map(float, data["scale"])), tuple(map(float, data["coef"])),
                             float(data["intercept"]), tuple(map(float, data["iso_x"])),
                             tuple(map(float, data["iso_y"])),
                             tuple(OperatingPoint(**p) for p in data["curve"]), dict(data.get("fitted") or {}))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed calibrator: {exc}") from None
        unknown = set(calibrator.signals) - set(SIGNALS)
        if unknown or not (len(calibrator.signals) == len(calibrator.center) == len(calibrator.scale)
                           == len(calibrator.coef)) or len(calibrator.iso_x) != len(calibrator.iso_y):
            raise ValueError(f"malformed calibrator: unknown signals {sorted(unknown)} or mismatched lengths")
        return calibrator

    def save(self, path: Path) -> Path:
        """A kill while saving leaves the old file or the new one."""
        return write_json_atomically(path, self.to_json(), indent=1)

    @classmethod
    def load(cls, path: Path, *, model: str | None = None, embedder: str | None = None) -> Calibrator:
        """The calibrator in ``path``; with ``model`` and ``embedder``, a
        :class:`CalibratorMismatchError` when it was fitted for others."""
        try:
            data = read_json(path, "a calibrator")
        except FileNotFoundError:
            raise FileNotFoundError(f"no answerability calibrator at {path}; fit one with `assistant calibrate`") from None
        try:
            calibrator = cls.from_json(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        if model is not None and embedder is not None:
            calibrator.check_matches(model=model, embedder=embedder)
        return calibrator


def calibrator_path(index_dir: Path, adapter: str | None) -> Path:
    """Where the calibrator of ``adapter``'s answers (None: the base model's) over an index lives."""
    return Path(index_dir) / (CALIBRATOR_FILE if adapter is None else f"answerability.{adapter}.json")


def load_gates(index_dir: Path, adapters: Sequence[str | None], *, model: str, embedder: str,
               max_hallucination: float = DEFAULT_MAX_HALLUCINATION) -> dict[str | None, Gate]:
    """The gate of each of ``adapters`` that has a calibrator beside the index; a
    :class:`CalibratorMismatchError` when one was fitted for another model or embedder."""
    gates: dict[str | None, Gate] = {}
    for adapter in adapters:
        path = calibrator_path(index_dir, adapter)
        if path.is_file():
            gates[adapter] = Calibrator.load(path, model=model, embedder=embedder).gate(max_hallucination)
    return gates


def _interpolate(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """Piecewise-linear through (xs, ys), flat beyond the ends: scikit-learn's
    ``IsotonicRegression(out_of_bounds="clip").predict``."""
    if not xs:
        return 0.0
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    lo, hi = 0, len(xs) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if xs[mid] <= x:
            lo = mid
        else:
            hi = mid
    span = xs[hi] - xs[lo]
    return ys[lo] if span == 0 else ys[lo] + (ys[hi] - ys[lo]) * (x - xs[lo]) / span
