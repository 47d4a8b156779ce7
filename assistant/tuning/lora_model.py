"""The model side of a tuning run: the base model (NF4 4-bit when possible) with fresh
LoRA adapters, the precision to compute in, the loss on answer tokens, the eval loss,
the processes of a data-parallel run, and peak memory."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from assistant.tuning.packed_data import load_packed
from assistant.tuning.train_settings import TuneSettings
from indexer.embedder import native_bf16


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
    return native_bf16(device)


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


@torch.no_grad()
def eval_loss(model: Any, data: dict[str, torch.Tensor], settings: TuneSettings, device: torch.device,
             bf16: bool = False) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, data["input_ids"].shape[0], settings.batch_size):
        loss, n = token_loss(model, {k: v[start:start + settings.batch_size] for k, v in data.items()}, device, bf16)
        total, count = total + float(loss), count + n
    model.train()
    return total / max(count, 1)


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
    import torch.distributed as dist

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if cuda else "cpu")
    if world > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
    return world, rank, device


def all_sum(value: torch.Tensor, world: int) -> torch.Tensor:
    """``value`` summed over the processes of a data-parallel run, in place."""
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


@dataclass
class Prepared:
    """What a run trains: the model with its LoRA parameters, and the data."""

    model: Any
    params: list[torch.nn.Parameter]
    quantized: bool
    bf16: bool
    train_data: dict[str, torch.Tensor]
    eval_data: dict[str, torch.Tensor]


def prepare(settings: TuneSettings, device: torch.device) -> Prepared:
    """The data split and the model, checked against each other (the trainer and the
    learning-rate range test start the same way)."""
    train_data, eval_data = load_packed(settings)
    bf16 = use_bf16(settings, device)
    model, quantized = load_model(settings, device, bf16)
    vocab = model.get_input_embeddings().num_embeddings
    if int(train_data["input_ids"].max()) >= vocab:
        raise ValueError(f"{settings.data} holds token ids beyond the vocabulary of {settings.model} ({vocab}); "
                         "pack the data with this model's tokenizer")
    params = [p for p in model.parameters() if p.requires_grad]
    return Prepared(model, params, quantized, bf16, train_data, eval_data)
