"""The files of a tuning run: atomic saves, the latest checkpoint, and the loss chart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from assistant.plots import pyplot


def save_atomic(folder: Path, write: Any) -> None:
    """``write(tmp)`` then one rename, so a crash never leaves a half-written ``folder``."""
    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def latest_checkpoint(out: Path) -> Path | None:
    done = [p for p in (out / "checkpoints").glob("step-*") if (p / "state.pt").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def plot_losses(log: Path, png: Path) -> Path | None:
    """Train and eval loss against step; None when matplotlib is not installed."""
    plt = pyplot()
    if plt is None:
        return None
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    fig, ax = plt.subplots(figsize=(7, 4))
    train = [(r["step"], r["loss"]) for r in rows if r["kind"] == "train"]
    if train:
        ax.plot(*zip(*train), alpha=0.35, label="train")
        window = max(1, len(train) // 12)  # a moving mean shows the trend through small-batch noise
        if window > 1:
            means = np.convolve([v for _, v in train], np.ones(window) / window, mode="valid")
            ax.plot([s for s, _ in train][window - 1:], means, label=f"train, mean of {window}")
    evals = [(r["step"], r["eval_loss"]) for r in rows if r["kind"] == "eval"]
    if evals:
        ax.plot(*zip(*evals), marker="o", label="eval")
    ax.set(xlabel="step", ylabel="loss", title="tuning loss")
    ax.legend()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
