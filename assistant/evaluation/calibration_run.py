"""``assistant calibrate``: answer a calibration set as the service would (or read such a
run's answers), fit each set's calibrator (:mod:`.calibrate`) and store it beside the
set's index.

    summary = calibrate_sets(generator, {"covidqa": (items, index)}, out, adapter=None, settings=settings)
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from assistant.evaluation.calibrate import draw_risk_coverage, fit_calibrator, fit_choices
from assistant.evaluation.run import run_eval
from assistant.grounding.answerability import OperatingPoint, calibrator_path


def calibrate_sets(generator: Any, sets: Mapping[str, tuple[Sequence[Any], Any]], out: Any, *, adapter: str | None,
                   settings: Any, answers: Any = None, max_hallucination: float = 0.10,
                   progress: bool = False) -> dict[str, Any]:
    """Answer each set's calibration items as the service would (one rag system: the
    base model's, or ``adapter``'s), or read the answers of such a run (``answers``: its
    ``answers.jsonl``), fit one calibrator per set and store it beside the set's index.
    Writes ``calibration.json`` and the out-of-fold ``risk_coverage.png`` to ``out``."""
    out = Path(out)
    system = "adapter+rag" if adapter else "base+rag"
    if answers is None:
        if generator is None:
            raise ValueError("calibration needs a generator to answer with, or the answers of a run (--answers)")
        run_eval(generator, sets, out, adapter=adapter, systems=[system], settings=settings, progress=progress)
        answers = out / "answers.jsonl"
    with Path(answers).open(encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    summary: dict[str, Any] = {"system": system, "adapter": adapter, "max_hallucination": max_hallucination, "sets": {}}
    curves: dict[str, dict[str, list[OperatingPoint]]] = {}
    marks: dict[str, dict[str, OperatingPoint]] = {}
    for name, (_, index) in sets.items():
        mine = [r for r in records if r.get("set") == name and r.get("system") == system]
        if not mine:
            raise ValueError(f"no {system} answers for set {name!r} in {answers}")
        fitted = {"model": getattr(generator, "model_name", None) or _model_of(answers), "adapter": adapter,
                  "embedder": index.embedder.name, "set": name, "answer_mode": getattr(settings, "answer_mode", None),
                  "min_score": getattr(settings, "min_score", None), "choices": getattr(settings, "choices", None),
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if any(r.get("choice") for r in mine):
            # choice answers: the decision is learned; the answerability gate is for generated text
            summary["sets"][name] = fit_choices(mine, index, adapter, fitted)
            continue
        calibrator = fit_calibrator(mine, fitted=fitted)
        path = calibrator.save(calibrator_path(index.directory, adapter))
        threshold = calibrator.threshold_for(max_hallucination)
        point = next((p for p in calibrator.curve if p.threshold == threshold), calibrator.curve[-1])
        summary["sets"][name] = {"path": str(path), "threshold": threshold, "calibration_hallucination": point.hallucination,
                                 "calibration_coverage": point.coverage, **{k: calibrator.fitted[k] for k in
                                                                            ("answers", "shown_answers", "positives", "negatives")},
                                 "coef": dict(zip(calibrator.signals, calibrator.coef, strict=True))}
        curves[name] = {"calibrated (out-of-fold)": list(calibrator.curve)}
        marks[name] = {f"≤{max_hallucination:.0%}": point}
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if draw_risk_coverage(curves, out / "risk_coverage.png", marks):
        summary["plot"] = str(out / "risk_coverage.png")
    return summary


def _model_of(answers: Any) -> str | None:
    """The model named in the report beside an ``answers.jsonl``."""
    report = Path(answers).with_name("report.json")
    return json.loads(report.read_text(encoding="utf-8")).get("model") if report.is_file() else None
