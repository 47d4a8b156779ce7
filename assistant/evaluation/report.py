"""The evaluation report: ``report.json``, a Markdown table (``report.md``) and a
chart (``report.png``) of a :func:`assistant.evaluation.run.run_eval` result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from assistant.evaluation.drift import MAX_DRIFT
from assistant.plots import pyplot


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    adapters = ", ".join(str(a) for a in [report["adapter"], *report.get("also", [])] if a) or "none"
    lines = [f"# Evaluation ({report['created']})", "", f"Adapter: {adapters} (system `adapter` is "
             f"{report['adapter'] or 'none'}); "
             f"top-{report['settings']['top_k']} passages; at most {report['settings']['max_new_tokens']} new tokens; "
             f"{report.get('seconds', 0) / 60:.1f} minutes. Accuracy ± the half-width of its 95% interval.", "",
             "| set | system | n | accuracy | raw accuracy | exact match | ROUGE-L | macro-F1 | recall@k | citation precision | "
             "abstains | hallucination (unanswerable) | raw hallucination | unsupported |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def cell(value: Any) -> str:
        return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    for set_name, rows in report["sets"].items():
        for system in report["systems"]:
            r = rows[system]
            rag = system.endswith("+rag")
            accuracy = cell(r["accuracy"]) + (f" ± {r['accuracy_ci95']:.3f}" if r.get("accuracy_ci95") else "")
            lines.append(" | ".join(["", set_name, system, cell(r["n"]), accuracy, cell(r["raw_accuracy"]),
                                     cell(r.get("exact_match")), cell(r.get("rouge_l")), cell(r.get("macro_f1")),
                                     cell(rows["recall_at_k"]) if rag else "", cell(r.get("citation_precision")),
                                     cell(r["abstention_rate"]), cell(r.get("hallucination_rate")),
                                     cell(r.get("raw_hallucination_rate")), cell(r.get("unsupported_rate")),
                                     ""]).strip())
    drift = report.get("drift")
    if drift is not None:
        lines += ["", f"General drift of {report['adapter']} from the base model: {drift['drift']:+.1%} (perplexity of the "
                  f"base model's answers to general prompts {drift['answers_ppl_base']:.2f} → "
                  f"{drift['answers_ppl_adapter']:.2f}; of general text {drift['text_ppl_base']:.2f} → "
                  f"{drift['text_ppl_adapter']:.2f}). The gate's bound is +{MAX_DRIFT:.0%}."]
    for name, other in report.get("drifts", {}).items():
        if name != report["adapter"]:
            lines.append(f"General drift of {name}: {other['drift']:+.1%}.")
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    written = [out / "report.json", out / "report.md"]
    plt = pyplot()
    if plt is None:
        return written
    sets, systems = list(report["sets"]), report["systems"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(len(systems), 1)
    for j, system in enumerate(systems):
        xs = [i + j * width for i in range(len(sets))]
        axes[0].bar(xs, [report["sets"][s][system]["accuracy"] or 0 for s in sets], width, label=system)
        axes[1].bar(xs, [report["sets"][s][system].get("hallucination_rate") or 0 for s in sets], width, label=system)
    for ax, title in zip(axes, ("accuracy (shown answers)", "hallucination rate (unanswerable split)"), strict=True):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(sets))], sets)
        ax.set(title=title, ylim=(0, 1))
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "report.png", dpi=100)
    plt.close(fig)
    return [*written, out / "report.png"]


def write_risk_coverage(answers: list[dict[str, Any]], out: Path) -> list[Path]:
    """``risk_coverage.png``: per set, each rag system's hallucination against coverage as
    the bar on its answers rises: the calibrator's score where the run had one, else the
    best passage's cosine (the hand-set rule's score)."""
    from assistant.evaluation.calibrate import draw_risk_coverage, risk_coverage

    curves: dict[str, dict[str, Any]] = {}
    for record in answers:
        if record["system"].endswith("+rag"):
            curves.setdefault(record["set"], {}).setdefault(record["system"], []).append(record)
    drawn: dict[str, dict[str, Any]] = {}
    for set_name, by_system in curves.items():
        for system, records in by_system.items():
            checked = [r for r in records if (r.get("answerability") or {}).get("signals")]
            if not checked:
                continue
            calibrated = all("score" in r["answerability"] for r in checked)
            scores = [r["answerability"]["score"] if calibrated else r["answerability"]["signals"]["dense_best"]
                      for r in checked]
            label = f"{system} ({'calibrated' if calibrated else 'best cosine'})"
            drawn.setdefault(set_name, {})[label] = risk_coverage(scores, checked, records)
    path = out / "risk_coverage.png"
    return [path] if draw_risk_coverage(drawn, path) else []
