"""The ``prefer`` stage: preference tuning of a supervised adapter with TRL, read top to bottom.

    summary = train_preferences(PreferSettings(), model="models/base", parent="registry/v3",
                                data=read_preferences("prefs.jsonl"), out=Path("runs/prefer-1"))

Pairs (chosen over rejected) train with TRL's ``DPOTrainer``; unpaired thumbs with its
``KTOTrainer`` (``method="auto"`` picks KTO as soon as there is one unpaired example,
and then feeds each pair to it as one good and one bad completion). TRL is the
well-kept implementation of both losses; we write none of our own.

The supervised adapter is loaded trainable and TRL copies it into a second, frozen
adapter that serves as the reference policy, so the reference costs one more LoRA, not
a second copy of the model. The base model is NF4 4-bit on CUDA (QLoRA) and fp32 on
CPU. The trainer checkpoints every ``save_every`` steps under ``out/trainer``; a
second run in the same folder resumes from the last one. The result is
``out/adapter``, the tuned copy of the supervised adapter alone (written whole, then
renamed), which the registry takes as a child of its parent.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.tuning.preferences import Messages, PreferenceData, messages_to_list

METHODS = ("auto", "dpo", "kto")
QUANTIZE = ("auto", "4bit", "none")


@dataclass(frozen=True)
class PreferSettings:
    method: str = field(default="auto", metadata={
        "help": "dpo (pairs), kto (pairs and thumbs), or auto (kto when there are thumbs, else dpo)"})
    beta: float = field(default=0.1, metadata={"help": "how far the policy may move from the reference; higher = less"})
    sft_weight: float = field(default=0.0, metadata={
        "help": "DPO: weight of a supervised term on the chosen answers beside the preference loss (TRL's "
                "loss_type sigmoid+sft); 0 = plain DPO"})
    lr: float = field(default=2e-5, metadata={"help": "peak learning rate"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the preference data"})
    max_steps: int = field(default=0, metadata={"help": "optimizer steps in all; 0 = from epochs"})
    batch_size: int = field(default=4, metadata={"help": "examples per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of the steps spent warming up, 0..0.5"})
    max_prompt_tokens: int = field(default=1024, metadata={"help": "a longer prompt is an error naming its line"})
    max_answer_tokens: int = field(default=160, metadata={"help": "chosen/rejected/completion tokens kept"})
    desirable_weight: float = field(default=1.0, metadata={"help": "KTO: weight of good completions"})
    undesirable_weight: float = field(default=1.0, metadata={"help": "KTO: weight of bad completions"})
    save_every: int = field(default=50, metadata={"help": "checkpoint every N steps (a rerun resumes); 0 = never"})
    seed: int = field(default=0, metadata={"help": "seed of the data order"})
    quantize: str = field(default="auto", metadata={"help": "4bit (NF4, CUDA), none, or auto (4bit on CUDA only)"})

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.quantize not in QUANTIZE:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE)}, got {self.quantize!r}")
        if not 0.0 < self.beta <= 10.0:
            raise ValueError(f"beta must be in (0, 10], got {self.beta}")
        if not 0.0 < self.lr < 1.0:
            raise ValueError(f"lr must be in (0, 1), got {self.lr}")
        if not 0.0 < self.epochs <= 100:
            raise ValueError(f"epochs must be in (0, 100], got {self.epochs}")
        if not 0.0 <= self.warmup_ratio <= 0.5:
            raise ValueError(f"warmup_ratio must be in [0, 0.5], got {self.warmup_ratio}")
        for name in ("batch_size", "grad_accum", "max_prompt_tokens", "max_answer_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.sft_weight <= 10.0:
            raise ValueError(f"sft_weight must be in [0, 10], got {self.sft_weight}")
        for name in ("max_steps", "save_every", "desirable_weight", "undesirable_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")

    def method_for(self, data: PreferenceData) -> str:
        if not len(data):
            raise ValueError("no preference data: nothing to train on")
        if self.method == "dpo" and not data.pairs:
            raise ValueError(f"method dpo needs chosen/rejected pairs; the data holds {len(data.unpaired)} "
                             "rated answers and no pair (use method kto)")
        if self.method != "auto":
            return self.method
        return "kto" if data.unpaired else "dpo"


StepCallback = Callable[[dict[str, Any]], None]


def prompt_counter(tokenizer: Any) -> Callable[[Messages], int]:
    """Tokens of a chat prompt as the model sees it (its chat template, generation prompt on)."""
    def count(messages: Messages) -> int:
        return len(tokenizer.apply_chat_template(messages_to_list(messages), add_generation_prompt=True,
                                                 tokenize=True, return_dict=True)["input_ids"])
    return count


def training_rows(data: PreferenceData, tokenizer: Any, method: str) -> list[dict[str, Any]]:
    """Rows in TRL's plain-text format: the prompt rendered with the chat template."""
    def render(messages: Messages) -> str:
        return str(tokenizer.apply_chat_template(messages_to_list(messages), add_generation_prompt=True,
                                                 tokenize=False))
    if method == "dpo":
        return [{"prompt": render(p.prompt), "chosen": p.chosen, "rejected": p.rejected} for p in data.pairs]
    rows = [{"prompt": render(u.prompt), "completion": u.completion, "label": u.label} for u in data.unpaired]
    for pair in data.pairs:
        prompt = render(pair.prompt)
        rows += [{"prompt": prompt, "completion": pair.chosen, "label": True},
                 {"prompt": prompt, "completion": pair.rejected, "label": False}]
    return rows


def load_policy(model: str, parent: Path, quantize: str) -> tuple[Any, Any, bool]:
    """The base model with the supervised adapter loaded trainable, its tokenizer, and
    whether the base is 4-bit."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    quantized = quantize == "4bit" or (quantize == "auto" and cuda)
    if quantized:
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.bfloat16 if cuda else torch.float32)
        base = AutoModelForCausalLM.from_pretrained(model, quantization_config=bnb,
                                                    device_map={"": 0} if cuda else {"": "cpu"})
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    else:
        base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    policy = PeftModel.from_pretrained(base, str(parent), is_trainable=True)
    return policy, tokenizer, quantized


def _last_checkpoint(folder: Path) -> Path | None:
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def train_preferences(settings: PreferSettings, *, model: str, parent: Path, data: PreferenceData, out: Path,
                      on_step: StepCallback | None = None) -> dict[str, Any]:
    """Tunes a copy of the ``parent`` adapter on ``data``; writes ``out/adapter`` and
    returns a summary (method, steps, the last reward margin and accuracy, time, memory)."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    from assistant.tuning.lora_model import peak_memory_mb
    from assistant.tuning.run_files import save_atomic
    from indexer.embedder import native_bf16

    method = settings.method_for(data)
    out.mkdir(parents=True, exist_ok=True)
    (out / "settings.json").write_text(json.dumps(dataclasses.asdict(settings), indent=2) + "\n", encoding="utf-8")
    policy, tokenizer, quantized = load_policy(model, parent, settings.quantize)
    rows = training_rows(data, tokenizer, method)
    dataset = Dataset.from_list(rows)
    cuda = torch.cuda.is_available()
    common: dict[str, Any] = dict(
        output_dir=str(out / "trainer"), per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum, learning_rate=settings.lr,
        num_train_epochs=settings.epochs, max_steps=settings.max_steps or -1,
        # a float below 1 is a share of the steps
        warmup_steps=float(settings.warmup_ratio),
        lr_scheduler_type="cosine", beta=settings.beta, seed=settings.seed, data_seed=settings.seed,
        max_length=settings.max_prompt_tokens + settings.max_answer_tokens,
        logging_steps=1, report_to=[], save_strategy="steps" if settings.save_every else "no",
        save_steps=settings.save_every or 500, save_total_limit=2, use_cpu=not cuda,
        bf16=native_bf16(torch.device("cuda" if cuda else "cpu")), dataloader_num_workers=0, gradient_checkpointing=False,
        disable_tqdm=False)
    began = time.perf_counter()
    history: list[dict[str, Any]] = []

    class Progress(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if logs and "loss" in logs:
                row = {"kind": "train", "step": state.global_step, "max_steps": state.max_steps,
                       "loss": float(logs["loss"]), "tokens_per_s": None} | {
                    k: float(v) for k, v in logs.items() if k.startswith("rewards/") and isinstance(v, (int, float))}
                history.append(row)
                if on_step is not None:
                    on_step(row)

    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        # Plain DPO can lower the chosen answers' likelihood as long as the rejected ones fall
        # faster; on pairs that mostly prefer the refusal that taught the 135M example adapter to
        # refuse everything. The supervised term keeps the chosen answers likely.
        losses = ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, settings.sft_weight]}
                  if settings.sft_weight else {})
        trainer: Any = DPOTrainer(model=policy, ref_model=None, args=DPOConfig(**common, **losses),
                                  train_dataset=dataset,
                                  processing_class=tokenizer, callbacks=[Progress()])
    else:
        from trl import KTOConfig, KTOTrainer

        kto = KTOConfig(**common, desirable_weight=settings.desirable_weight,
                        undesirable_weight=settings.undesirable_weight)
        trainer = KTOTrainer(model=policy, ref_model=None, args=kto, train_dataset=dataset,
                             processing_class=tokenizer, callbacks=[Progress()])
    checkpoint = _last_checkpoint(out / "trainer")
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    save_atomic(out / "adapter", lambda tmp: trainer.model.save_pretrained(str(tmp), selected_adapters=["default"]))
    last = history[-1] if history else {}
    return {"method": method, "pairs": len(data.pairs), "unpaired": len(data.unpaired), "rows": len(rows),
            "step": int(trainer.state.global_step), "resumed_from": str(checkpoint) if checkpoint else None,
            "loss": last.get("loss"), "reward_margin": last.get("rewards/margins"),
            "reward_accuracy": last.get("rewards/accuracies"), "quantized": quantized,
            "seconds": round(time.perf_counter() - began, 1), "peak_memory_mb": peak_memory_mb(
                torch.device("cuda" if cuda else "cpu")),
            "adapter": str(out / "adapter"), "log": [r for r in history if math.isfinite(r["loss"])]}
