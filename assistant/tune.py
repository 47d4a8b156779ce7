"""QLoRA tuning of the base model on a packed RAFT set: one recipe, read top to bottom.

    python -m assistant.tune --model models/base --data runs/raft-1/packed.npz --out runs/tune-1
    python -m assistant.tune ... --lr-range-test      # suggests --lr first (lr_range.json, lr_range.png)

``packed.npz`` is what :meth:`assistant.raft.RaftSet.save` writes: ``input_ids``,
``labels`` (-100 on prompt and padding) and ``position_ids`` (restarting at 0 for
every packed example), each ``(n_seq, seq_len)``. A share of the sequences is held
out for the eval loss. The base model is loaded in NF4 4-bit when bitsandbytes is
there, LoRA goes on every linear layer, and training runs AdamW with a linear
warmup and a cosine decay, gradient accumulation and clipping, periodic eval with
early stopping, and atomic checkpoints that a second run resumes from. The output
folder holds::

    checkpoints/step-N/   adapter (save_pretrained) + state.pt (optimizer, scheduler, RNG, step)
    adapter/              the final adapter        best/   the adapter of the lowest eval loss
    log.jsonl             one line per step and per eval      loss.png   (when matplotlib is installed)
    settings.json
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from assistant.plots import pyplot

QUANTIZE = ("auto", "4bit", "none")
PRECISIONS = ("auto", "bf16", "fp32")
# settings a resumed run must share with the run that wrote the checkpoint
RESUME_KEYS = ("model", "data", "lora_r", "lora_alpha", "eval_fraction", "seed", "quantize")


@dataclass(frozen=True)
class TuneSettings:
    model: str = field(metadata={"help": "base model folder or hub id"})
    data: str = field(metadata={"help": "packed.npz written by RaftSet.save"})
    out: str = field(metadata={"help": "output folder: checkpoints, adapter, log"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scale numerator (scale = alpha / r)"})
    # 0 by default: on CPU the dropout masks of 7 LoRA inputs per layer took a fifth of each step
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input, 0..1"})
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=10, metadata={"help": "optimizer steps of linear warmup"})
    max_steps: int = field(default=200, metadata={"help": "optimizer steps in all (cosine decays to 0 here)"})
    batch_size: int = field(default=4, metadata={"help": "sequences per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "clip the gradient norm to this; 0 = no clipping"})
    eval_every: int = field(default=50, metadata={"help": "eval loss every N steps (and at the end); 0 = only at the end"})
    eval_fraction: float = field(default=0.1, metadata={"help": "share of sequences held out for eval, 0..0.5"})
    early_stopping_patience: int = field(
        default=0, metadata={"help": "stop after N evals without a lower eval loss; 0 = never"})
    save_every: int = field(default=100, metadata={"help": "checkpoint every N steps; 0 = no checkpoints"})
    seed: int = field(default=0, metadata={"help": "seed of the split, the data order, LoRA init and dropout"})
    quantize: str = field(default="auto", metadata={"help": "4bit (NF4), none, or auto (4bit when bitsandbytes imports)"})
    gradient_checkpointing: bool = field(default=True, metadata={"help": "recompute activations (4-bit only)"})
    precision: str = field(default="auto", metadata={
        "help": "matmul precision: bf16 (autocast), fp32, or auto (bf16 on CUDA and on CPUs with native bf16)"})

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE)}, got {self.quantize!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("lora_r", "lora_alpha", "max_steps", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "save_every", "early_stopping_patience", "weight_decay",
                     "max_grad_norm"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0.0 < self.lr < 1.0:
            raise ValueError(f"lr must be in (0, 1), got {self.lr}")
        if self.warmup_steps >= self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be below max_steps ({self.max_steps})")
        if not 0.0 <= self.eval_fraction <= 0.5:
            raise ValueError(f"eval_fraction must be in [0, 0.5], got {self.eval_fraction}")
        if self.early_stopping_patience and self.eval_fraction == 0:
            raise ValueError("early_stopping_patience needs an eval set; set eval_fraction above 0 "
                             "or early_stopping_patience to 0")


def load_packed(settings: TuneSettings) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The packed arrays split into (train, eval) by a seeded shuffle of the sequences."""
    path = Path(settings.data)
    if not path.is_file():
        raise ValueError(f"no packed data at {path}; build it with RaftSet.save (it writes packed.npz)")
    with np.load(path) as npz:
        missing = {"input_ids", "labels", "position_ids"} - set(npz.files)
        if missing:
            raise ValueError(f"{path} lacks {', '.join(sorted(missing))}; rebuild it with RaftSet.save")
        arrays = {k: torch.from_numpy(npz[k].astype(np.int64)) for k in ("input_ids", "labels", "position_ids")}
    shape = arrays["input_ids"].shape
    if len(shape) != 2 or any(a.shape != shape for a in arrays.values()):
        raise ValueError(f"{path}: input_ids, labels and position_ids must share one (n_seq, seq_len) shape")
    n_eval = math.ceil(shape[0] * settings.eval_fraction)
    if shape[0] - n_eval < 1:
        raise ValueError(f"{path} has {shape[0]} sequences, none left to train on after eval_fraction "
                         f"{settings.eval_fraction}; lower eval_fraction or add data")
    order = torch.randperm(shape[0], generator=torch.Generator().manual_seed(settings.seed))
    train = {k: v[order[n_eval:]] for k, v in arrays.items()}
    held = {k: v[order[:n_eval]] for k, v in arrays.items()}
    if not (train["labels"] != -100).any():
        raise ValueError(f"{path}: every training label is -100; nothing to learn")
    return train, held


def load_model(settings: TuneSettings, device: torch.device, bf16: bool = False) -> tuple[Any, bool]:
    """The base model (NF4 4-bit when asked and possible, else bf16 when ``bf16``, else
    fp32) wrapped with fresh LoRA adapters (kept in fp32 by peft)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    quantized = settings.quantize == "4bit"
    if settings.quantize == "auto":
        try:
            import bitsandbytes  # noqa: F401
            quantized = True
        except ImportError:
            quantized = False
    cuda = device.type == "cuda"
    if quantized:
        from transformers import BitsAndBytesConfig

        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.bfloat16 if cuda else torch.float32)
        model = AutoModelForCausalLM.from_pretrained(settings.model, quantization_config=bnb,
                                                     device_map={"": device.index or 0} if cuda else {"": "cpu"})
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        for module in model.modules():
            # in eval mode bitsandbytes repacks CPU weights into an inference layout whose
            # kernel has no autograd: training after the first eval would backprop wrongly
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
        if settings.gradient_checkpointing:
            # non-reentrant checkpointing needs no input grads; transformers 5 renamed the
            # method that peft would call (and deprecated the old name)
            enable = getattr(model, "activation_checkpointing_enable", None)
            if enable is not None:
                enable({"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model = AutoModelForCausalLM.from_pretrained(
            settings.model, dtype=torch.bfloat16 if bf16 else torch.float32).to(device)  # type: ignore[arg-type]
    model.config.use_cache = False  # no KV cache while training
    lora = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora), quantized


def use_bf16(settings: TuneSettings, device: torch.device) -> bool:
    if settings.precision != "auto":
        return settings.precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # without native bf16 (AVX512-BF16 / AMX) the CPU emulates it, slower than fp32
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def token_loss(model: Any, batch: dict[str, torch.Tensor], device: torch.device,
               bf16: bool = False) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over labelled tokens, and their count.

    No attention mask: given only ``position_ids``, transformers builds a block-diagonal
    causal mask, so packed examples neither see each other nor share positions. The
    output layer runs only on the labelled positions (a RAFT answer is a tenth of its
    example), which spares most of the vocabulary-sized logits."""
    ids, labels, pos = (batch[k].to(device) for k in ("input_ids", "labels", "position_ids"))
    targets = F.pad(labels[:, 1:], (0, 1), value=-100)  # token t predicts label t+1
    keep = targets != -100
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        hidden = base.get_decoder()(input_ids=ids, position_ids=pos).last_hidden_state
        logits = base.get_output_embeddings()(hidden[keep]).float()
    loss = F.cross_entropy(logits, targets[keep], reduction="sum")
    return loss, int(keep.sum())


def micro_batch(data: dict[str, torch.Tensor], index: int, settings: TuneSettings) -> dict[str, torch.Tensor]:
    """Micro-batch number ``index`` of an endless stream of seeded epochs: a function of
    the index alone, so a resumed run sees the data it would have seen."""
    n = data["input_ids"].shape[0]
    rows = []
    for t in range(index * settings.batch_size, (index + 1) * settings.batch_size):
        epoch, i = divmod(t, n)
        rows.append(epoch_order(n, settings.seed + 1 + epoch)[i])
    batch = {k: v[rows] for k, v in data.items()}
    # columns after the last label change no loss (attention is causal): mostly padding
    labelled = (batch["labels"] != -100).any(dim=0).nonzero()
    width = int(labelled[-1]) + 1 if len(labelled) else 1
    return {k: v[:, :width] for k, v in batch.items()}


@functools.lru_cache(maxsize=4)
def epoch_order(n: int, seed: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


@torch.no_grad()
def evaluate(model: Any, data: dict[str, torch.Tensor], settings: TuneSettings, device: torch.device,
             bf16: bool = False) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, data["input_ids"].shape[0], settings.batch_size):
        loss, n = token_loss(model, {k: v[start:start + settings.batch_size] for k, v in data.items()}, device, bf16)
        total, count = total + float(loss), count + n
    model.train()
    return total / max(count, 1)


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


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak GPU memory allocated on CUDA; peak resident set size of this process elsewhere
    (None where the OS does not report it)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    try:
        import resource
    except ImportError:  # Windows
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB on Linux
    return round(kib / 2**20 if sys.platform == "darwin" else kib / 2**10, 1)


def distributed_setup() -> tuple[int, int, torch.device]:
    """(world size, rank, device). Under ``torchrun`` / ``accelerate launch`` (WORLD_SIZE
    > 1) each process takes its own GPU (``LOCAL_RANK``), or the CPU with gloo."""
    import os

    import torch.distributed as dist

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if cuda else "cpu")
    if world > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
    return world, rank, device


def _all_sum(value: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def train(settings: TuneSettings) -> dict[str, Any]:
    """Runs (or resumes) the recipe; returns a summary of the run.

    Data-parallel when launched as several processes (``torchrun --nproc_per_node N
    -m assistant.tune …`` or ``accelerate launch --num_processes N -m assistant.tune
    …``): each process trains on its own share of every step's micro-batches, the
    LoRA gradients are summed across processes before each optimizer step (so a step
    equals one batch N times larger), and only rank 0 writes logs and checkpoints."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]
    from transformers import get_cosine_schedule_with_warmup

    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(settings.seed)
    np.random.seed(settings.seed)
    torch.manual_seed(settings.seed)  # the same LoRA init in every process
    world, rank, device = distributed_setup()
    main_rank = rank == 0
    train_data, eval_data = load_packed(settings)
    bf16 = use_bf16(settings, device)
    model, quantized = load_model(settings, device, bf16)
    weights_mb = model.get_memory_footprint() / 2**20
    vocab = model.get_input_embeddings().num_embeddings
    if int(train_data["input_ids"].max()) >= vocab:
        raise ValueError(f"{settings.data} holds token ids beyond the vocabulary of {settings.model} ({vocab}); "
                         "pack the data with this model's tokenizer")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, settings.warmup_steps, settings.max_steps)

    step, best, best_step, bad_evals = 0, math.inf, 0, 0
    log_path = out / ("log.jsonl" if main_rank else f".log-rank{rank}.jsonl")
    checkpoint = latest_checkpoint(out)
    if checkpoint is not None:
        saved = json.loads((out / "settings.json").read_text(encoding="utf-8"))
        changed = [k for k in RESUME_KEYS if saved.get(k) != getattr(settings, k)]
        if changed:
            raise ValueError(f"{out} holds checkpoints of a run with other {', '.join(changed)}; "
                             "pass a new --out or delete its checkpoints folder")
        set_peft_model_state_dict(model, load_file(checkpoint / "adapter_model.safetensors", device=str(device)))
        state = torch.load(checkpoint / "state.pt", map_location=device, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"].cpu())
        step, best, best_step, bad_evals = state["step"], state["best"], state["best_step"], state["bad_evals"]
        # drop what a crashed run logged after its last checkpoint: those steps run again
        kept = [line for line in log_path.read_text(encoding="utf-8").splitlines() if json.loads(line)["step"] <= step]
        log_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    else:
        log_path.write_text("", encoding="utf-8")
    if main_rank:
        (out / "settings.json").write_text(json.dumps(dataclasses.asdict(settings), indent=2) + "\n",
                                           encoding="utf-8")
    start_step, stopped_early = step, False
    began, tokens_seen = time.perf_counter(), 0

    def record(**row: Any) -> None:
        log.write(json.dumps(row) + "\n")
        log.flush()

    def save_checkpoint() -> None:
        def write(tmp: Path) -> None:
            model.save_pretrained(str(tmp))
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "rng": torch.get_rng_state(), "step": step, "best": best, "best_step": best_step,
                        "bad_evals": bad_evals}, tmp / "state.pt")
        if main_rank:
            (out / "checkpoints").mkdir(exist_ok=True)
            save_atomic(out / "checkpoints" / f"step-{step}", write)

    with open(log_path, "a", encoding="utf-8") as log:
        model.train()
        bar = tqdm(total=settings.max_steps, initial=step, desc="tune", dynamic_ncols=True, disable=not main_rank)
        while step < settings.max_steps:
            started = time.perf_counter()
            batches = [micro_batch(train_data, (step * settings.grad_accum + i) * world + rank, settings)
                       for i in range(settings.grad_accum)]
            # normalise by every labelled token of the step in every process, so accumulation
            # and data parallelism equal one big batch
            local_labels = sum(int((F.pad(b["labels"][:, 1:], (0, 1), value=-100) != -100).sum()) for b in batches)
            n_labels = int(_all_sum(torch.tensor(float(local_labels), device=device), world))
            local_total = 0.0
            for batch in batches:
                loss, _ = token_loss(model, batch, device, bf16)
                (loss / max(n_labels, 1)).backward()
                local_total += float(loss.detach())
            if world > 1:
                for p in params:
                    if p.grad is not None:
                        _all_sum(p.grad, world)
            total = float(_all_sum(torch.tensor(local_total, device=device), world))
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm or math.inf))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            step_tokens = sum(b["input_ids"].numel() for b in batches) * world
            tokens_seen += step_tokens
            tokens_per_s = step_tokens / (time.perf_counter() - started)
            train_loss = total / max(n_labels, 1)
            record(kind="train", step=step, loss=train_loss, lr=scheduler.get_last_lr()[0], grad_norm=grad_norm,
                   tokens_per_s=tokens_per_s)
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tokens_per_s:.0f}")
            last = step == settings.max_steps
            if eval_data["input_ids"].shape[0] and (last or (settings.eval_every and step % settings.eval_every == 0)):
                eval_loss = evaluate(model, eval_data, settings, device, bf16)
                # averaged, so that every process takes the same early-stopping decision
                eval_loss = float(_all_sum(torch.tensor(eval_loss, device=device), world)) / world
                record(kind="eval", step=step, eval_loss=eval_loss)
                if main_rank:
                    bar.write(f"step {step}: eval loss {eval_loss:.4f}", file=sys.stderr)
                if eval_loss < best:
                    best, best_step, bad_evals = eval_loss, step, 0
                    if main_rank:
                        save_atomic(out / "best", lambda tmp: model.save_pretrained(str(tmp)))
                else:
                    bad_evals += 1
                    if settings.early_stopping_patience and bad_evals >= settings.early_stopping_patience:
                        stopped_early = True
            if (settings.save_every and step % settings.save_every == 0) or stopped_early:
                save_checkpoint()
            if stopped_early:
                bar.write(f"early stop at step {step}: no lower eval loss in {bad_evals} evals (best {best:.4f} "
                          f"at step {best_step})", file=sys.stderr)
                break
        bar.close()
    if main_rank:
        save_atomic(out / "adapter", lambda tmp: model.save_pretrained(str(tmp)))
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # every process ends with rank 0's files written
        dist.destroy_process_group()
    return {"start_step": start_step, "step": step, "resumed_from": str(checkpoint) if checkpoint else None,
            "stopped_early": stopped_early, "best_eval_loss": best if best < math.inf else None,
            "best_step": best_step or None, "quantized": quantized, "bf16": bf16, "tokens": tokens_seen,
            "seconds": round(time.perf_counter() - began, 1), "weights_mb": round(weights_mb, 1),
            "peak_memory_mb": peak_memory_mb(device), "adapter": str(out / "adapter"),
            "log": str(log_path), "processes": world,
            "plot": str(p) if main_rank and (p := plot_losses(log_path, out / "loss.png")) else None}


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
    train_data, _ = load_packed(settings)
    bf16 = use_bf16(settings, device)
    model, _ = load_model(settings, device, bf16)
    params = [p for p in model.parameters() if p.requires_grad]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assistant.tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(TuneSettings):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=f.metadata["help"])
        elif f.default is dataclasses.MISSING:
            parser.add_argument(flag, required=True, help=f.metadata["help"])
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, default=f.default,
                                help=f"{f.metadata['help']} (default {f.default})")
    parser.add_argument("--lr-range-test", action="store_true",
                        help="instead of training, run a learning-rate range test and suggest --lr")
    args = parser.parse_args(argv)
    range_test = args.__dict__.pop("lr_range_test")
    try:
        settings = TuneSettings(**vars(args))
    except ValueError as e:
        parser.error(str(e))
    print(json.dumps(lr_range_test(settings) if range_test else train(settings), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
