"""The settings of one QLoRA tuning run (:mod:`.trainer`), validated whole before
anything loads, and saved beside the run so that a resumed run can be checked."""

from __future__ import annotations

from dataclasses import dataclass, field

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
