"""QLoRA tuning of the base model on a packed RAFT set: one recipe, read top to bottom.

    python -m assistant.tuning.trainer --model models/base --data runs/raft-1/packed.npz --out runs/tune-1
    python -m assistant.tuning.trainer ... --lr-range-test   # suggests --lr first (lr_range.json, .png)

``packed.npz`` is what :meth:`assistant.tuning.raft.RaftSet.save` writes (see
:mod:`.packed_data`). A share of the sequences is held out for the eval loss. The
base model is loaded in NF4 4-bit when bitsandbytes is there, LoRA goes on every
linear layer (:mod:`.lora_model`), and training runs AdamW with a linear warmup and a
cosine decay, gradient accumulation and clipping, periodic eval with early stopping,
and atomic checkpoints that a second run resumes from. The output folder holds::

    checkpoints/step-N/   adapter (save_pretrained) + state.pt (optimizer, scheduler, RNG, step)
    adapter/              the final adapter        best/   the adapter of the lowest eval loss
    log.jsonl             one line per step and per eval      loss.png   (when matplotlib is installed)
    settings.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from assistant.settings import add_flags, from_flags
from assistant.tuning.lora_model import all_sum, distributed_setup, eval_loss, peak_memory_mb, prepare, token_loss
from assistant.tuning.packed_data import micro_batch
from assistant.tuning.run_files import latest_checkpoint, plot_losses, save_atomic
from assistant.tuning.train_settings import RESUME_KEYS, TuneSettings

StepCallback = Callable[[dict[str, Any]], None]
"""Receives each training row (``kind`` "train" or "eval") as it is logged."""


@dataclasses.dataclass
class TrainState:
    """Where a run stands; saved in every checkpoint, so a resumed run goes on from it."""

    step: int = 0
    best: float = math.inf
    best_step: int = 0
    bad_evals: int = 0


def train(settings: TuneSettings, on_step: StepCallback | None = None) -> dict[str, Any]:
    """Runs (or resumes) the recipe; returns a summary of the run.

    Data-parallel when launched as several processes (``torchrun --nproc_per_node N
    -m assistant.tuning.trainer …`` or ``accelerate launch --num_processes N -m
    assistant.tuning.trainer …``): each process trains on its own share of every step's
    micro-batches, the LoRA gradients are summed across processes before each optimizer
    step (so a step equals one batch N times larger), and only rank 0 writes files."""
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]
    from transformers import get_cosine_schedule_with_warmup

    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(settings.seed)
    np.random.seed(settings.seed)
    torch.manual_seed(settings.seed)  # the same LoRA init in every process
    world, rank, device = distributed_setup()
    main_rank = rank == 0
    run = prepare(settings, device)
    weights_mb = run.model.get_memory_footprint() / 2**20
    optimizer = torch.optim.AdamW(run.params, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, settings.warmup_steps, settings.max_steps)

    log_path = out / ("log.jsonl" if main_rank else f".log-rank{rank}.jsonl")
    checkpoint = latest_checkpoint(out)
    state = _resume(checkpoint, settings, run.model, optimizer, scheduler, device, log_path)
    if main_rank:
        (out / "settings.json").write_text(json.dumps(dataclasses.asdict(settings), indent=2) + "\n",
                                           encoding="utf-8")
    start_step, stopped_early = state.step, False
    began, tokens_seen = time.perf_counter(), 0

    def save_checkpoint() -> None:
        def write(tmp: Path) -> None:
            run.model.save_pretrained(str(tmp))
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "rng": torch.get_rng_state(), **dataclasses.asdict(state)}, tmp / "state.pt")
        if main_rank:
            (out / "checkpoints").mkdir(exist_ok=True)
            save_atomic(out / "checkpoints" / f"step-{state.step}", write)

    with open(log_path, "a", encoding="utf-8") as log:
        def record(**row: Any) -> None:
            log.write(json.dumps(row) + "\n")
            log.flush()
            if on_step is not None and main_rank:
                on_step(row | {"max_steps": settings.max_steps})

        run.model.train()
        bar = tqdm(total=settings.max_steps, initial=state.step, desc="tune", dynamic_ncols=True, disable=not main_rank)
        while state.step < settings.max_steps:
            started = time.perf_counter()
            train_loss, grad_norm, step_tokens = _optimizer_step(run, settings, optimizer, device, state.step, world, rank)
            scheduler.step()
            state.step += 1
            tokens_seen += step_tokens
            tokens_per_s = step_tokens / (time.perf_counter() - started)
            record(kind="train", step=state.step, loss=train_loss, lr=scheduler.get_last_lr()[0], grad_norm=grad_norm,
                   tokens_per_s=tokens_per_s)
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tokens_per_s:.0f}")
            last = state.step == settings.max_steps
            if run.eval_data["input_ids"].shape[0] and (last or (settings.eval_every and state.step % settings.eval_every == 0)):
                loss = eval_loss(run.model, run.eval_data, settings, device, run.bf16)
                # averaged, so that every process takes the same early-stopping decision
                loss = float(all_sum(torch.tensor(loss, device=device), world)) / world
                record(kind="eval", step=state.step, eval_loss=loss)
                if main_rank:
                    bar.write(f"step {state.step}: eval loss {loss:.4f}", file=sys.stderr)
                if loss < state.best:
                    state.best, state.best_step, state.bad_evals = loss, state.step, 0
                    if main_rank:
                        save_atomic(out / "best", lambda tmp: run.model.save_pretrained(str(tmp)))
                else:
                    state.bad_evals += 1
                    stopped_early = bool(settings.early_stopping_patience
                                         and state.bad_evals >= settings.early_stopping_patience)
            if (settings.save_every and state.step % settings.save_every == 0) or stopped_early:
                save_checkpoint()
            if stopped_early:
                bar.write(f"early stop at step {state.step}: no lower eval loss in {state.bad_evals} evals "
                          f"(best {state.best:.4f} at step {state.best_step})", file=sys.stderr)
                break
        bar.close()
    if main_rank:
        save_atomic(out / "adapter", lambda tmp: run.model.save_pretrained(str(tmp)))
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # every process ends with rank 0's files written
        dist.destroy_process_group()
    return {"start_step": start_step, "step": state.step, "resumed_from": str(checkpoint) if checkpoint else None,
            "stopped_early": stopped_early, "best_eval_loss": state.best if state.best < math.inf else None,
            "best_step": state.best_step or None, "quantized": run.quantized, "bf16": run.bf16, "tokens": tokens_seen,
            "seconds": round(time.perf_counter() - began, 1), "weights_mb": round(weights_mb, 1),
            "peak_memory_mb": peak_memory_mb(device), "adapter": str(out / "adapter"),
            "log": str(log_path), "processes": world,
            "plot": str(p) if main_rank and (p := plot_losses(log_path, out / "loss.png")) else None}


def _optimizer_step(run: Any, settings: TuneSettings, optimizer: Any, device: torch.device, step: int,
                    world: int, rank: int) -> tuple[float, float, int]:
    """One optimizer step over ``grad_accum`` micro-batches in every process: the mean
    loss per labelled token, the gradient norm before clipping, and the tokens seen."""
    batches = [micro_batch(run.train_data, (step * settings.grad_accum + i) * world + rank, settings)
               for i in range(settings.grad_accum)]
    # normalise by every labelled token of the step in every process, so accumulation
    # and data parallelism equal one big batch
    local_labels = sum(int((F.pad(b["labels"][:, 1:], (0, 1), value=-100) != -100).sum()) for b in batches)
    n_labels = int(all_sum(torch.tensor(float(local_labels), device=device), world))
    local_total = 0.0
    for batch in batches:
        loss, _ = token_loss(run.model, batch, device, run.bf16)
        (loss / max(n_labels, 1)).backward()
        local_total += float(loss.detach())
    if world > 1:
        for p in run.params:
            if p.grad is not None:
                all_sum(p.grad, world)
    total = float(all_sum(torch.tensor(local_total, device=device), world))
    grad_norm = float(torch.nn.utils.clip_grad_norm_(run.params, settings.max_grad_norm or math.inf))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / max(n_labels, 1), grad_norm, sum(b["input_ids"].numel() for b in batches) * world


def _resume(checkpoint: Path | None, settings: TuneSettings, model: Any, optimizer: Any, scheduler: Any,
            device: torch.device, log_path: Path) -> TrainState:
    """The state of the last checkpoint loaded into the model and optimizer (a fresh
    start without one); refuses a checkpoint of a run with other settings."""
    if checkpoint is None:
        log_path.write_text("", encoding="utf-8")
        return TrainState()
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    saved = json.loads((Path(settings.out) / "settings.json").read_text(encoding="utf-8"))
    changed = [k for k in RESUME_KEYS if saved.get(k) != getattr(settings, k)]
    if changed:
        raise ValueError(f"{settings.out} holds checkpoints of a run with other {', '.join(changed)}; "
                         "pass a new --out or delete its checkpoints folder")
    set_peft_model_state_dict(model, load_file(checkpoint / "adapter_model.safetensors", device=str(device)))
    state = torch.load(checkpoint / "state.pt", map_location=device, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"].cpu())
    progress = TrainState(state["step"], state["best"], state["best_step"], state["bad_evals"])
    # drop what a crashed run logged after its last checkpoint: those steps run again
    kept = [line for line in log_path.read_text(encoding="utf-8").splitlines()
            if json.loads(line)["step"] <= progress.step]
    log_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return progress


def main(argv: list[str] | None = None) -> int:
    from assistant.tuning.lr_range import lr_range_test

    parser = argparse.ArgumentParser(prog="python -m assistant.tuning.trainer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, TuneSettings)
    parser.add_argument("--lr-range-test", action="store_true",
                        help="instead of training, run a learning-rate range test and suggest --lr")
    args = parser.parse_args(argv)
    try:
        settings = from_flags(TuneSettings, args)
    except ValueError as e:
        parser.error(str(e))
    print(json.dumps(lr_range_test(settings) if args.lr_range_test else train(settings), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
