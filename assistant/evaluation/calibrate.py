"""Fitting the answerability calibrator on an evaluation run's answers (``assistant
calibrate``), and the risk–coverage view of any answer score.

    calibrator = fit_calibrator(records, fitted={"model": ..., "embedder": ...})
    calibrator.save(calibrator_path(index_dir, adapter=None))

The records are ``answers.jsonl`` lines of one rag system on one set (answerable and
unanswerable splits, see :mod:`.run`). An answer is a positive when it was asked with
the gold passage among its passages, a negative when the gold was removed (the
unanswerable split) or not retrieved. Only answers the check showed are fitted on,
since the calibrator only ever withholds those.

The model: scikit-learn's standardiser and logistic regression over the signals of
:mod:`assistant.grounding.answerability`, then an isotonic map fitted on out-of-fold
scores, so the probabilities and the stored risk–coverage curve are those of answers
the regression did not see. The calibration items must not be the ones reported on:
:func:`check_disjoint` refuses answers that include held-out items.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from assistant.evaluation.scoring import mean
from assistant.grounding.answerability import NEVER, SIGNALS, Calibrator, OperatingPoint

FOLDS = 5
MIN_PER_CLASS = 4  # fewer shown answers of a kind than this and nothing can be learned about it


def is_positive(record: Mapping[str, Any]) -> bool:
    return record["split"] == "answerable" and bool(record.get("gold_retrieved"))


def signals_of(record: Mapping[str, Any]) -> dict[str, float | None]:
    return dict((record.get("answerability") or {}).get("signals") or {})


def check_disjoint(records: Sequence[Mapping[str, Any]], held_out: Mapping[str, set[str]]) -> None:
    """``ValueError`` when a record is a held-out item of its set: fitting on what is
    reported would overstate the calibrator."""
    leaked = [r["id"] for r in records if r["id"] in held_out.get(r.get("set", ""), set())]
    if leaked:
        raise ValueError(f"{len(leaked)} of the calibration answers are held-out items (e.g. {leaked[0]}); "
                         "fit on the calibration split (assistant eval --split calibration)")


def fit_calibrator(records: Sequence[Mapping[str, Any]], *, fitted: Mapping[str, Any],
                   signals: Sequence[str] = SIGNALS, seed: int = 0) -> Calibrator:
    """The calibrator of one system's answers on one set (or pooled sets)."""
    import numpy as np
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    shown = [r for r in records if r.get("shown")]
    labels = np.array([int(is_positive(r)) for r in shown])
    positives, negatives = int(labels.sum()), int(len(labels) - labels.sum())
    if min(positives, negatives) < MIN_PER_CLASS:
        raise ValueError(f"the calibration answers hold {positives} shown answers with the gold passage and "
                         f"{negatives} without; at least {MIN_PER_CLASS} of each are needed (use more items, "
                         "with the unanswerable split)")
    raw = np.array([[_finite(signals_of(r).get(name)) for name in signals] for r in shown], dtype=float)
    means = np.nanmean(raw, axis=0)
    features = np.where(np.isnan(raw), np.nan_to_num(means), raw)  # a signal not reported: its mean
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    folds = StratifiedKFold(n_splits=min(FOLDS, positives, negatives), shuffle=True, random_state=seed)
    out_of_fold = cross_val_predict(model, features, labels, cv=folds, method="decision_function")
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(out_of_fold, labels)
    model.fit(features, labels)
    scaler, regression = model[0], model[1]
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    curve = risk_coverage(out_of_fold.tolist(), shown, records)  # thresholds on the score (see answerability)
    return Calibrator(tuple(signals), tuple(scaler.mean_.tolist()), tuple(scale.tolist()),
                      tuple(regression.coef_[0].tolist()), float(regression.intercept_[0]),
                      tuple(isotonic.X_thresholds_.tolist()), tuple(isotonic.y_thresholds_.tolist()),
                      tuple(curve), dict(fitted) | {"shown_answers": len(shown), "positives": positives,
                                                    "negatives": negatives, "answers": len(records)})


def risk_coverage(scores: Sequence[float], shown: Sequence[Mapping[str, Any]],
                  records: Sequence[Mapping[str, Any]]) -> list[OperatingPoint]:
    """For each threshold over ``scores`` (one per shown answer, by rising threshold):
    the share of all unanswerable questions still answered, and of all answerable
    questions with the gold retrieved."""
    unanswerable = sum(r["split"] == "unanswerable" for r in records) or 1
    answerable = sum(is_positive(r) for r in records) or 1
    points = []
    for threshold in sorted(set(scores)) + [math.inf]:
        kept = [r for r, s in zip(shown, scores, strict=True) if s >= threshold]
        points.append(OperatingPoint(threshold if math.isfinite(threshold) else NEVER,
                                     sum(r["split"] == "unanswerable" for r in kept) / unanswerable,
                                     sum(is_positive(r) for r in kept) / answerable))
    return points


def gated_scores(records: Sequence[Mapping[str, Any]], keep: Callable[[Mapping[str, Any]], bool]) -> dict[str, Any]:
    """What users see when only the shown answers that ``keep`` accepts stay shown:
    accuracy, hallucination (with its Wilson 95% interval), coverage of answerable
    questions with the gold retrieved, citation precision, abstention."""
    answerable = [r for r in records if r["split"] == "answerable"]
    unanswerable = [r for r in records if r["split"] == "unanswerable"]
    visible = {id(r): bool(r.get("shown")) and keep(r) for r in records}
    shown_answerable = [r for r in answerable if visible[id(r)]]
    hallucinated = sum(visible[id(r)] for r in unanswerable)
    with_gold = [r for r in answerable if r.get("gold_retrieved")]
    cites = [float(r["cites_gold"]) for r in shown_answerable if r.get("cites_gold") is not None]
    return {"n": len(answerable), "accuracy": mean([r["shown_score"] if visible[id(r)] else 0.0 for r in answerable]),
            "raw_accuracy": mean([r["score"] for r in answerable]),
            "coverage": mean([float(visible[id(r)]) for r in with_gold]),
            "abstention_rate": mean([float(not visible[id(r)]) for r in answerable]),
            "citation_precision": mean(cites),
            "hallucination_rate": hallucinated / len(unanswerable) if unanswerable else None,
            "hallucination_ci95": wilson(hallucinated, len(unanswerable)), "unanswerable_n": len(unanswerable)}


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion: sound near 0 and 1, where the normal one is not."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def draw_risk_coverage(curves: Mapping[str, Mapping[str, list[OperatingPoint]]], path: Any,
                       marks: Mapping[str, Mapping[str, OperatingPoint]] | None = None) -> bool:
    """One panel per set: hallucination against coverage for each named score, with the
    chosen operating points marked. False when matplotlib is missing."""
    from assistant.plots import pyplot

    plt = pyplot()
    if plt is None or not curves:
        return False
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.6), squeeze=False)
    for ax, (set_name, by_score) in zip(axes[0], curves.items(), strict=True):
        for label, points in by_score.items():
            ax.plot([p.coverage for p in points], [p.hallucination for p in points], label=label, drawstyle="steps-post")
        for label, point in ((marks or {}).get(set_name) or {}).items():
            ax.scatter([point.coverage], [point.hallucination], marker="o", zorder=3, label=label)
        ax.set(title=set_name, xlabel="coverage (answerable, gold retrieved)", ylabel="hallucination (unanswerable)",
               xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _finite(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(value) else math.nan


def fit_choices(records: Sequence[Mapping[str, Any]], index: Any, adapter: str | None,
                fitted: Mapping[str, Any]) -> dict[str, Any]:
    """The choice head of a set's choice answers (answerable split: the contexts that hold
    the abstract), stored beside the index; its training accuracy beside the majority's."""
    from collections import Counter

    from assistant.grounding.choice_head import choice_head_path, fit_choice_head

    asked = [r for r in records if r["split"] == "answerable" and r.get("choice")]
    if not asked:
        raise ValueError("no choice answers on the answerable split to fit a choice head on")
    choices = list(next(iter(asked))["choice"]["probabilities"])
    gold = [r["gold"].strip().lower() for r in asked]
    head = fit_choice_head([r["choice"]["mean_logprobs"] for r in asked], gold, choices, fitted=fitted)
    path = head.save(choice_head_path(index.directory, adapter))
    right = sum(choices[max(range(len(choices)), key=p.__getitem__)] == g
                for p, g in zip((head.probabilities(r["choice"]["mean_logprobs"]) for r in asked), gold, strict=True))
    return {"path": str(path), "choice_head": True, "items": len(asked), "training_accuracy": right / len(asked),
            "majority_accuracy": Counter(gold).most_common(1)[0][1] / len(asked)}
