"""Leslie Smith's learning-rate range test for a tuning run
(``python -m assistant.tuning.trainer ... --lr-range-test``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from assistant.plots import pyplot
from assistant.tuning.lora_model import prepare, token_loss
from assistant.tuning.packed_data import micro_batch
from assistant.tuning.train_settings import TuneSettings


def lr_range_test(settings: TuneSettings, *, start: float = 1e-6, end: float = 1e-1,
                  steps: int = 60) -> dict[str, Any]:
    """Leslie Smith's learning-rate range test: ``steps`` optimizer steps with the rate
    rising geometrically from ``start`` to ``end``, stopped once the smoothed loss passes
    4× its best. Suggests a tenth of the rate at the lowest smoothed loss (a rate that
    still descends steadily) and writes ``lr_range.json`` (and ``lr_range.png``) to
    ``out``. The model is fresh each time: nothing is saved for training."""
    if not 0 < start < end:
        raise ValueError(f"the range must satisfy 0 < start < end, got {start} and {end}")
    if steps < 5:
        raise ValueError(f"the range test needs at least 5 steps, got {steps}")
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    run = prepare(settings, device)
    model, params, bf16, train_data = run.model, run.params, run.bf16, run.train_data
    optimizer = torch.optim.AdamW(params, lr=start, weight_decay=settings.weight_decay)
    factor = (end / start) ** (1 / (steps - 1))
    rows: list[dict[str, float]] = []
    smoothed, best = 0.0, math.inf
    model.train()
    for step in range(steps):
        lr = start * factor**step
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, n = token_loss(model, micro_batch(train_data, step, settings), device, bf16)
        (loss / max(n, 1)).backward()
        torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm or math.inf)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach()) / max(n, 1)
        smoothed = value if step == 0 else 0.8 * smoothed + 0.2 * value  # an EMA: single steps are noisy
        rows.append({"step": step + 1, "lr": lr, "loss": value, "smoothed": smoothed})
        best = min(best, smoothed)
        if step > 5 and smoothed > 4 * best:
            break
    lowest = min(rows, key=lambda r: r["smoothed"])
    result = {"suggested_lr": lowest["lr"] / 10, "lr_at_lowest_loss": lowest["lr"], "steps": len(rows), "rows": rows}
    (out / "lr_range.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plt = pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot([r["lr"] for r in rows], [r["smoothed"] for r in rows])
        ax.axvline(result["suggested_lr"], linestyle="--", label=f"suggested {result['suggested_lr']:.1e}")
        ax.set(xscale="log", xlabel="learning rate", ylabel="loss (smoothed)", title="learning-rate range test")
        ax.legend()
        fig.savefig(out / "lr_range.png", dpi=100)
        plt.close(fig)
    return {k: v for k, v in result.items() if k != "rows"}
