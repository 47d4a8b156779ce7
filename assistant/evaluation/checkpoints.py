"""Over-tuning across one run: each checkpoint's domain accuracy with retrieval against
its general drift, and the checkpoint to keep (``assistant eval --checkpoints RUN_DIR``)."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from assistant.evaluation.drift import MAX_DRIFT, general_drift
from assistant.evaluation.run import EvalSettings, evaluate_set
from assistant.evaluation.scoring import mean
from assistant.evaluation.sets import EvalItem
from assistant.generation.base import TextGenerator
from assistant.plots import pyplot


def checkpoint_curve(generator: TextGenerator, checkpoints: Sequence[str], sets: Mapping[str, tuple[Sequence[EvalItem], Any]],
                     out: Path, *, settings: EvalSettings | None = None, max_drift: float = MAX_DRIFT,
                     progress: bool = False) -> dict[str, Any]:
    """Over-tuning across one run: for each checkpoint (an adapter name the generator
    can load) the domain accuracy with retrieval, averaged over the sets, and the
    general drift; the recommended checkpoint is the most accurate one whose drift is
    within ``max_drift``. Writes ``checkpoints.json`` and ``checkpoints.png``."""
    settings = dataclasses.replace(settings or EvalSettings(), unanswerable=False)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        probe_cache = Path(scratch) / "base-answers.json"  # the base model's probe answers, once for every checkpoint
        for name in checkpoints:
            scores = [evaluate_set(generator, items, index, ["adapter+rag"], name, settings,
                                   progress)["adapter+rag"]["accuracy"] for items, index in sets.values()]
            drift = general_drift(generator, name, cache=probe_cache)["drift"]
            rows.append({"checkpoint": name, "accuracy": mean(scores), "drift": drift})
    allowed = [r for r in rows if r["drift"] <= max_drift and r["accuracy"] is not None]
    best = max(allowed, key=lambda r: r["accuracy"], default=None)
    result = {"checkpoints": rows, "max_drift": max_drift, "recommended": best["checkpoint"] if best else None}
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plt = pyplot()
    if plt is None:
        return result
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["drift"] for r in rows], [r["accuracy"] or 0 for r in rows], marker="o")
    for r in rows:
        ax.annotate(r["checkpoint"], (r["drift"], r["accuracy"] or 0), fontsize=8)
    if best is not None:
        ax.scatter([best["drift"]], [best["accuracy"]], s=200, marker="*", color="red", zorder=3, label="recommended")
        ax.legend()
    ax.axvline(max_drift, linestyle="--", color="gray")
    ax.set(xlabel="general drift (perplexity rise over the base model)", ylabel="domain accuracy with retrieval",
           title="checkpoints: domain score against general drift")
    fig.tight_layout()
    fig.savefig(out / "checkpoints.png", dpi=100)
    plt.close(fig)
    return result
