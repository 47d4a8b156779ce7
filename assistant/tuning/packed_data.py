"""The packed tuning set as the trainer reads it: ``packed.npz`` (what
:meth:`assistant.tuning.raft.RaftSet.save` writes: ``input_ids``, ``labels`` with -100
on prompt and padding, and ``position_ids`` restarting at 0 for every packed example,
each ``(n_seq, seq_len)``), split into train and eval, and served as micro-batches."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch

from assistant.tuning.train_settings import TuneSettings


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
