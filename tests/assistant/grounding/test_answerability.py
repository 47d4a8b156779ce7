"""Calibrated answerability: the stored model answers as scikit-learn does, the operating
point meets its target on the calibration answers, a gate withholds what falls below it,
and a file for another model or embedder is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assistant.evaluation.calibrate import fit_calibrator, gated_scores, risk_coverage, wilson
from assistant.grounding.answerability import (SIGNALS, Calibrator, CalibratorMismatchError, Gate, _interpolate,
                                               answer_signals, calibrator_path, load_gates)
from assistant.grounding.check import NOT_FOUND_MESSAGE, finalize
from assistant.grounding.passages import make_passage
from assistant.grounding.verify import OverlapVerifier

from calibration_records import synthetic_records

FITTED = {"model": "tiny", "embedder": "minilm"}


@pytest.fixture(scope="module")
def calibrator() -> Calibrator:
    return fit_calibrator(synthetic_records(), fitted=FITTED)


def test_the_stored_model_answers_as_scikit_learn(calibrator: Calibrator) -> None:
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    records = [r for r in synthetic_records() if r["shown"]]
    rows = [[r["answerability"]["signals"][s] for s in SIGNALS] for r in records]
    x = np.array([[np.nan if v is None else v for v in row] for row in rows])
    x = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
    y = [int(r["split"] == "answerable") for r in records]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    for row, features in zip(rows, x, strict=True):
        mine = calibrator.score(dict(zip(SIGNALS, row, strict=True)))  # None: the fitted mean stands in
        assert mine == pytest.approx(model.decision_function([features])[0], abs=1e-9)
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=50), rng.integers(0, 2, 50)
    iso = IsotonicRegression(out_of_bounds="clip").fit(xs, ys)
    for value in [-5.0, *rng.normal(size=20), 5.0]:
        assert _interpolate(float(value), iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist()) == pytest.approx(
            float(iso.predict([value])[0]))


def test_probability_rises_with_the_evidence(calibrator: Calibrator) -> None:
    weak = {"dense_best": 0.35, "claim_support": 0.5}
    strong = {"dense_best": 0.85, "claim_support": 0.95}
    assert 0.0 <= calibrator.probability(weak) < calibrator.probability(strong) <= 1.0


def test_the_operating_point_meets_its_target_on_the_calibration_answers(calibrator: Calibrator) -> None:
    for target in (0.05, 0.10, 0.25):
        threshold = calibrator.threshold_for(target)
        point = next(p for p in calibrator.curve if p.threshold == threshold)
        assert point.hallucination <= target
        looser = [p for p in calibrator.curve if p.threshold < threshold]
        assert all(p.hallucination > target for p in looser)  # the loosest threshold that meets it
    assert calibrator.threshold_for(0.05) >= calibrator.threshold_for(0.25)
    with pytest.raises(ValueError, match="between 0 and 1"):
        calibrator.threshold_for(1.5)


def test_saved_and_loaded_it_is_the_same_and_a_mismatch_is_refused(calibrator: Calibrator, tmp_path: Path) -> None:
    path = calibrator.save(calibrator_path(tmp_path, None))
    assert [p.name for p in tmp_path.iterdir()] == ["answerability.json"]  # no temporary file left behind
    loaded = Calibrator.load(path, model="tiny", embedder="minilm")
    signals = synthetic_records()[0]["answerability"]["signals"]
    assert loaded.probability(signals) == calibrator.probability(signals)
    with pytest.raises(CalibratorMismatchError, match="fitted for model 'tiny'.*uses 'other'.*assistant calibrate"):
        Calibrator.load(path, model="other", embedder="minilm")
    with pytest.raises(CalibratorMismatchError, match="embedder"):
        load_gates(tmp_path, [None], model="tiny", embedder="e5")
    assert set(load_gates(tmp_path, [None, "v2"], model="tiny", embedder="minilm")) == {None}  # v2 has none
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a calibrator"):
        Calibrator.load(path)
    path.write_text(json.dumps({"format": 1, "signals": ["dense_best"]}))
    with pytest.raises(ValueError, match="malformed calibrator"):
        Calibrator.load(path)
    with pytest.raises(FileNotFoundError, match="assistant calibrate"):
        Calibrator.load(tmp_path / "none.json")


def test_too_few_answers_of_a_kind_is_a_clear_error() -> None:
    records = [r for r in synthetic_records() if r["split"] == "answerable"][:20]
    with pytest.raises(ValueError, match="0 without; at least 4 of each"):
        fit_calibrator(records, fitted=FITTED)


def test_a_gate_withholds_an_answer_below_its_threshold(calibrator: Calibrator) -> None:
    passages = [make_passage(1, "d1", "a.md", "Pangolins eat ants and termites.", 1.0, 0.9)]
    verifier = OverlapVerifier()
    plain = finalize("Pangolins eat ants and termites.", passages, verifier, min_score=0.3, mean_logprob=-0.2)
    assert plain.grounded and set(plain.answerability["signals"]) == set(SIGNALS)
    assert plain.answerability["signals"]["dense_best"] == 0.9
    strict = Calibrator(**{**calibrator.__dict__, "curve": tuple(
        p.__class__(p.threshold, 1.0, p.coverage) for p in calibrator.curve)})  # never meets any target
    held = finalize("Pangolins eat ants and termites.", passages, verifier, min_score=0.3,
                    gate=strict.gate(0.10), mean_logprob=-0.2)
    assert not held.grounded and held.answer == NOT_FOUND_MESSAGE and held.citations == []
    assert "calibrator answers nothing at most 10%" in held.abstained_reason and held.closest
    assert held.dropped[-1]["text"] == "Pangolins eat ants and termites."
    signals = plain.answerability["signals"]
    above = Gate(calibrator, calibrator.score(signals) + 0.01, 0.10)  # a threshold just out of reach
    below = finalize("Pangolins eat ants and termites.", passages, verifier, min_score=0.3, gate=above,
                     mean_logprob=-0.2)
    assert not below.grounded
    assert f"calibrated answerability {calibrator.probability(signals):.2f} (score" in below.abstained_reason
    assert below.answerability["score_threshold"] == pytest.approx(above.threshold, abs=1e-4)
    at = Gate(calibrator, calibrator.score(signals), 0.10)  # the score itself passes
    assert finalize("Pangolins eat ants and termites.", passages, verifier, min_score=0.3, gate=at,
                    mean_logprob=-0.2).grounded
    lenient = calibrator.gate(1.0)
    passed = finalize("Pangolins eat ants and termites.", passages, verifier, min_score=0.3, gate=lenient)
    assert passed.grounded and passed.answerability["score_threshold"] == round(lenient.threshold, 4)
    assert 0.0 <= passed.answerability["probability"] <= 1.0 and 0.0 <= passed.answerability["threshold"] <= 1.0
    assert held.answerability["threshold"] is None  # the strict gate answers nothing


def test_signals_of_an_answer() -> None:
    passages = [make_passage(1, "d1", "a", "x", 1.0, 0.8), make_passage(2, "d2", "b", "y", 0.5, 0.6)]
    signals = answer_signals(passages, [{"support": 0.7}, {"support": 0.9}], 2, None)
    assert signals["dense_best"] == 0.8 and signals["dense_margin"] == pytest.approx(0.2)
    assert signals["claim_support"] == 0.9 and signals["claims_kept"] == 0.5 and signals["mean_logprob"] is None
    assert signals["bm25_best"] == 0.0  # no BM25 score on these passages


def test_gated_scores_and_the_curve_count_what_users_see() -> None:
    records = synthetic_records(40)
    everything = gated_scores(records, lambda r: True)
    nothing = gated_scores(records, lambda r: False)
    shown_unanswerable = sum(r["shown"] for r in records if r["split"] == "unanswerable")
    assert everything["hallucination_rate"] == shown_unanswerable / 20
    assert nothing["hallucination_rate"] == 0.0 and nothing["coverage"] == 0.0 and nothing["accuracy"] == 0.0
    shown = [r for r in records if r["shown"]]
    curve = risk_coverage([r["answerability"]["signals"]["dense_best"] for r in shown], shown, records)
    assert curve[0].hallucination == everything["hallucination_rate"] and curve[-1].coverage == 0.0
    assert all(a.hallucination >= b.hallucination for a, b in zip(curve, curve[1:]))
    low, high = wilson(0, 100)
    assert low == 0.0 and 0.03 < high < 0.04
