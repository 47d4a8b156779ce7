"""Fixtures for the assistant tests: a tiny causal LM with a ChatML tokenizer and
a LoRA adapter for it, both made here from a config (no download)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from server_harness import CITING, FABRICATED, QUESTIONS, train_fixed_answer

# peft 0.21 reads a property transformers 5 deprecated; not ours to fix.
PEFT_DEPRECATION = "`is_gradient_checkpointing` is deprecated"

# Same format as SmolLM2's template, without its default system message.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_tokenizer_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama (hidden 64) with random weights and the tiny BPE tokenizer
    of tests/conftest.py, saved as a transformers model folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(tiny_tokenizer_path),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapter registry holding one LoRA adapter, ``demo``, for the tiny model.
    Its weights are random (``init_lora_weights=False``), so it changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    registry = tmp_path_factory.mktemp("adapters")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PEFT_DEPRECATION, category=FutureWarning)
        get_peft_model(base, config).save_pretrained(str(registry / "demo"))
    return registry


@pytest.fixture(scope="module")
def citing_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_fixed_answer(tiny_model_dir, tmp_path_factory.mktemp("models") / "citing", CITING, QUESTIONS)


@pytest.fixture(scope="module")
def fabricating_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_fixed_answer(tiny_model_dir, tmp_path_factory.mktemp("models") / "fab", FABRICATED, QUESTIONS)
