"""Calibrated answerability on held-out answers, beside the simpler rules, on the same answers.

    .venv/bin/assistant eval --sets pubmedqa,covidqa,tatqa,medquad --split calibration --limit 60 \
        --systems base+rag --out .cache/runs/cal-base
    .venv/bin/assistant calibrate --sets pubmedqa,covidqa,tatqa,medquad --limit 60 \
        --answers .cache/runs/cal-base/answers.jsonl --out .cache/runs/cal-base/fit
    .venv/bin/assistant eval --sets pubmedqa,covidqa,tatqa,medquad --limit 100 --systems base+rag \
        --out .cache/runs/heldout-base
    .venv/bin/python bench/answerability.py --calibration .cache/runs/cal-base --heldout .cache/runs/heldout-base

The calibrators are the ones ``assistant calibrate`` stored beside each built-in set's
index (fitted on the calibration side only). Every held-out answer of the run is judged
three ways, on the same recorded answers and signals:

- **check**: the claim check with the hand-set ``min_score`` (what the run showed);
- **cosine threshold**: the check, then the best passage's cosine held to the lowest
  threshold that meets the hallucination target on the calibration answers (one signal,
  fitted on the same side as the calibrator: the simplest calibrated rule);
- **calibrated**: the check, then the calibrator at the same target, as the service
  and ``assistant eval --calibrated`` apply it (:meth:`Gate.passes` over the signals
  recorded in ``answers.jsonl``, the ones ``finalize`` computes).

Per set: coverage (answerable questions with the gold retrieved that are answered),
shown accuracy and raw accuracy, citation precision, hallucination on the unanswerable
split with its Wilson 95% interval. Writes ``bench/out/answerability.{json,md}`` and
``risk_coverage.png`` beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, env_info, env_markdown, md_table, write_results  # noqa: E402


def _records(run: Path, system: str) -> dict[str, list[dict[str, Any]]]:
    by_set: dict[str, list[dict[str, Any]]] = {}
    for line in (run / "answers.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["system"] == system and record["split"] in ("answerable", "unanswerable"):
            by_set.setdefault(record["set"], []).append(record)
    if not by_set:
        raise SystemExit(f"no {system} answers in {run / 'answers.jsonl'}")
    return by_set


def _checked(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if (r.get("answerability") or {}).get("signals")]


def main(argv: list[str] | None = None) -> int:
    from assistant.evaluation.calibrate import draw_risk_coverage, gated_scores, risk_coverage
    from assistant.generation.model_files import cache_dir
    from assistant.grounding.answerability import Calibrator, calibrator_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibration", type=Path, required=True, help="eval run on the calibration split")
    parser.add_argument("--heldout", type=Path, required=True, help="eval run on the held-out split")
    parser.add_argument("--system", default="base+rag")
    parser.add_argument("--adapter", help="the adapter whose calibrator to use (adapter+rag)")
    parser.add_argument("--max-hallucination", type=float, default=0.10)
    args = parser.parse_args(argv)
    target = args.max_hallucination
    calibration, heldout = _records(args.calibration, args.system), _records(args.heldout, args.system)
    overlap = {(s, r["id"]) for s, rs in calibration.items() for r in rs} & {(s, r["id"]) for s, rs in heldout.items() for r in rs}
    if overlap:
        raise SystemExit(f"{len(overlap)} items are in both runs (e.g. {sorted(overlap)[0]}): nothing reported may be fitted on")
    results: dict[str, Any] = {"system": args.system, "max_hallucination": target, "env": env_info(), "sets": {}}
    table, curves, marks = [], {}, {}
    for name, records in heldout.items():
        calibrator = Calibrator.load(calibrator_path(cache_dir() / "eval-index" / name, args.adapter))
        gate = calibrator.gate(target)
        cal_checked = _checked(calibration.get(name, []))
        cosine_curve = risk_coverage([r["answerability"]["signals"]["dense_best"] for r in cal_checked], cal_checked,
                                     calibration.get(name, []))
        cosine = next((p.threshold for p in cosine_curve if p.hallucination <= target), float("inf"))
        rules = {
            "check (min_score)": lambda r: True,
            (f"cosine ≥ {cosine:.3f}" if cosine <= 1 else "cosine (answers nothing)"):
                lambda r, t=cosine: r["answerability"]["signals"]["dense_best"] >= t,
            (f"calibrated (score ≥ {gate.threshold:.2f})" if not gate.answers_nothing else "calibrated (answers nothing)"):
                lambda r: gate.passes(r["answerability"]["signals"]),
        }
        results["sets"][name] = {"cosine_threshold": cosine, "calibrated_threshold": gate.threshold,
                                 "calibrator": calibrator.fitted, "rules": {}}
        for label, keep in rules.items():
            scored = gated_scores(records, lambda r, k=keep: bool(r.get("answerability")) and k(r))
            results["sets"][name]["rules"][label] = scored
            ci = scored["hallucination_ci95"]
            kept = (scored["accuracy"] or 0) / scored["raw_accuracy"] if scored["raw_accuracy"] else None
            table.append([name, label, scored["n"], scored["coverage"], scored["accuracy"], scored["raw_accuracy"], kept,
                          scored["citation_precision"], scored["hallucination_rate"],
                          f"{ci[0]:.2f}–{ci[1]:.2f}" if ci else "", scored["unanswerable_n"]])
        held_checked = _checked(records)
        curves[name] = {
            "best cosine": risk_coverage([r["answerability"]["signals"]["dense_best"] for r in held_checked],
                                         held_checked, records),
            "calibrated": risk_coverage([calibrator.score(r["answerability"]["signals"]) for r in held_checked],
                                        held_checked, records)}
        rows = results["sets"][name]["rules"]
        marks[name] = {label: _point(rows[label]) for label in rows}
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    plot = OUT_DIR / "answerability-risk_coverage.png"
    draw_risk_coverage(curves, plot, marks)
    markdown = "\n".join([
        f"# Calibrated answerability ({args.system}, held-out answers of {args.heldout}; fitted on {args.calibration})",
        "", f"Operating point: at most {target:.0%} of unanswerable questions answered, chosen on the calibration side.",
        "Coverage: answerable questions with the gold passage retrieved that are answered. Accuracy kept: shown / raw.",
        "", md_table(["set", "rule", "n", "coverage", "shown accuracy", "raw accuracy", "accuracy kept",
                      "citation precision", "hallucination", "95% interval", "unanswerable n"], table),
        "", f"Risk–coverage curves on the held-out answers: `{plot}`.", "", env_markdown(results["env"])])
    path = write_results("answerability", results, markdown)
    print(markdown)
    print(f"written: {path}, {plot}", file=sys.stderr)
    return 0


def _point(scored: dict[str, Any]) -> Any:
    from assistant.grounding.answerability import OperatingPoint

    return OperatingPoint(0.0, scored["hallucination_rate"] or 0.0, scored["coverage"] or 0.0)


if __name__ == "__main__":
    raise SystemExit(main())
