"""Training a cross-encoder reranker on (question, gold passage) pairs of a curated corpus.

    indexer tune-reranker --pairs curated/qa.jsonl --out models/reranker \\
        [--base CROSS_ENCODER] [--miner EMBEDDER] [--eval-set eval/medquad.jsonl ...] [--layers 3]
    INDEXER_RERANKER=models/reranker/v1 INDEXER_RERANK_DEPTH=20 indexer search my-index "a question"

:func:`tune_reranker` reads top to bottom, as :func:`indexer.embedder_tuning.tune_embedder`
does and with its steps: read the pairs → drop those whose question overlaps an evaluation set
→ split off a seeded validation part → mine hard negatives for each pair with the first-stage
embedder (the index's by default: the reranker learns to reorder the candidates it will be
given), the pair's own passage excluded → train with binary cross-entropy on (question,
passage, 1) and (question, negative, 0) rows, scoring reranking on the validation part as it
goes (nDCG@10 of each gold passage among its question's mined negatives), keeping the best
checkpoint and stopping early → save the model as ``OUT/v1``, ``OUT/v2`` ... with a
``tuning.json`` manifest. Resuming works as for the embedder (``OUT/run``).

Base: a cross-encoder (a folder, or a hub id already in the local cache); by default MiniLM's
weights, the bundled embedder's, which sentence-transformers turns into a cross-encoder with a
new one-logit head. What a search pays for reranking grows with the tokens of each (question,
passage) pair and with the layers: ``--max-seq-length``, ``--layers`` (keep the base's first
N) and ``--save-dtype bfloat16`` (for CPUs with bfloat16 units) are the levers.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.embedder_tuning import Pair, TuningSettings, base_model_folder, mine_negatives, prepare_pairs
from indexer.tuning_run import (
    RUN_FOLDER, checkpointed_schedule, input_record, local_model_folder, open_run, outcome_record,
    run_fingerprint, save_version,
)

DEFAULT_BASE = "bundled:all-MiniLM-L6-v2"  # no cross-encoder ships with the package; its weights start one
VALIDATION_NEGATIVES = 9  # with the gold passage, ten candidates: what nDCG@10 ranks
VALIDATION_METRIC = "validation_ndcg@10"
SAVE_DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class RerankerTuningSettings(TuningSettings):
    """:class:`~indexer.embedder_tuning.TuningSettings` (checked the same way), with the
    defaults and meanings of a cross-encoder trained on labelled pairs, and two more fields."""

    batch_size: int = field(default=32, metadata={"help": "(question, passage, label) rows per step"})
    learning_rate: float = field(default=1e-4, metadata={"help": "peak learning rate (AdamW, linear decay)"})
    """Above the embedder's 2e-5: the one-logit head starts from random weights and has a few hundred
    steps (450 pairs from MiniLM: validation nDCG@10 0.44 → 0.79 in 57 steps at 1e-4)."""
    negatives_per_pair: int = field(default=3, metadata={"help": "mined negatives per pair (weighed as one positive)"})
    max_seq_length: int = field(default=256, metadata={
        "help": "tokens of question and passage together; the reranker's time grows with them"})
    layers: int = field(default=0, metadata={"help": "keep the base's first N transformer layers; 0: all"})
    save_dtype: str = field(default="float32", metadata={
        "help": "float32, or bfloat16 (half the size; faster on CPUs with bfloat16 units, slower on others)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layers < 0:
            raise ValueError(f"layers must be 0 (all) or more, got {self.layers}")
        if self.save_dtype not in SAVE_DTYPES:
            raise ValueError(f"save_dtype must be one of {', '.join(SAVE_DTYPES)}, got {self.save_dtype!r}")


def reranker_base_folder(name: str | None) -> tuple[str, Path]:
    """``(name, folder)`` of the model to train: ``name``, or MiniLM's weights by default."""
    name = name or DEFAULT_BASE
    return name, local_model_folder(name, "--base with a local cross-encoder or sentence-transformers model "
                                          f"folder (the default is {DEFAULT_BASE})")


def labelled_rows(tuples: Any) -> Any:
    """(question, passage, negative_1 ... negative_n) rows → (question, passage, label) rows."""
    from datasets import Dataset

    columns: dict[str, list[Any]] = {"question": [], "passage": [], "label": []}
    texts = [name for name in tuples.column_names if name != "question"]  # the gold passage first
    for row in tuples:
        for i, name in enumerate(texts):
            columns["question"].append(row["question"])
            columns["passage"].append(row[name])
            columns["label"].append(1.0 if i == 0 else 0.0)
    return Dataset.from_dict(columns)


def validation_samples(miner: Any, validation: list[Pair], settings: RerankerTuningSettings) -> list[dict[str, Any]]:
    """One sample per validation pair for the reranking evaluator: its question, its passage and
    the miner's nearest other validation passages (as many as there are, up to nine)."""
    distinct = len({p.passage for p in validation})
    mining = dataclasses.replace(settings, negatives_per_pair=min(VALIDATION_NEGATIVES, distinct - 1))
    tuples, _ = mine_negatives(miner, validation, mining, progress=False)
    negatives = [name for name in tuples.column_names if name.startswith("negative_")]
    return [{"query": row["question"], "positive": [row["passage"]], "negative": [row[n] for n in negatives]}
            for row in tuples]


def validation_evaluator(samples: list[dict[str, Any]], batch_size: int) -> Any:
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    return CrossEncoderRerankingEvaluator(samples=samples, at_k=10, name="validation", batch_size=batch_size,
                                          write_csv=False)


def load_base(folder: Path, settings: RerankerTuningSettings) -> Any:
    """The cross-encoder to train: ``folder``'s, cut to ``settings.layers`` layers if set; a
    bi-encoder's weights get a new one-logit head that reads the [CLS] state."""
    from sentence_transformers import CrossEncoder
    from transformers import AutoConfig

    base_config = AutoConfig.from_pretrained(str(folder))
    config: dict[str, Any] = {"attention_probs_dropout_prob": settings.attention_dropout}
    if settings.layers:
        has = getattr(base_config, "num_hidden_layers", None)
        if has is None or settings.layers > has:
            raise ValueError(f"--layers {settings.layers}: the base at {folder} has {has or 'no countable'} "
                             "transformer layers; pass at most that many, or 0 for all")
        config["num_hidden_layers"] = settings.layers
    model = CrossEncoder(str(folder), num_labels=1, max_length=settings.max_seq_length, config_kwargs=config)
    if not any(a.endswith("ForSequenceClassification") for a in base_config.architectures or []):
        _pass_cls_through_pooler(model)
    return model


def _pass_cls_through_pooler(model: Any) -> None:
    """A bi-encoder's pooler (the dense + tanh layer a new head reads the [CLS] state through) was
    never trained: MiniLM's squeezes every input to nearly the same vector (weights of std 0.009),
    so the head's and the pooler's gradients are both tiny and the loss stays at chance for
    hundreds of steps. Made the identity, the head starts from the [CLS] state itself."""
    import torch

    pooler = getattr(getattr(model[0].model, "base_model", None), "pooler", None)
    if pooler is not None and hasattr(pooler, "dense"):
        with torch.no_grad():
            pooler.dense.weight.copy_(torch.eye(*pooler.dense.weight.shape))
            pooler.dense.bias.zero_()


def tune_reranker(pairs_path: Path, out_dir: Path, settings: RerankerTuningSettings | None = None, *,
                  base: str | None = None, miner: str | None = None, eval_sets: Sequence[Path] = (),
                  eval_fields: Sequence[str] = ("question",), progress: bool = True,
                  callbacks: Sequence[Any] = ()) -> tuple[Path, dict[str, Any]]:
    """Trains a cross-encoder from ``base`` on the pairs and returns ``(OUT/vN, its manifest)``.
    ``miner``: the embedder that mines the negatives (default: the index's).
    ``callbacks``: extra ``transformers.TrainerCallback`` objects (a progress sink, a stop signal)."""
    started = time.perf_counter()
    settings = settings or RerankerTuningSettings()
    base_name, base_folder = reranker_base_folder(base)
    miner_name, miner_folder = base_model_folder(miner, option="--miner")
    n_pairs, contaminated, training, validation = prepare_pairs(pairs_path, settings, eval_sets, eval_fields)

    from datasets import Dataset

    model = load_base(base_folder, settings)
    run_dir = out_dir / RUN_FOLDER
    run = open_run(run_dir, run_fingerprint(pairs_path, eval_sets, eval_fields, settings, base_folder, miner_folder))
    if "validation_before" not in run:
        run["with_hard_negatives"] = _mine(run_dir, miner_folder, training, validation, settings, progress=progress)
    evaluator = validation_evaluator(json.loads((run_dir / "validation.json").read_text(encoding="utf-8")),
                                     settings.batch_size)
    if "validation_before" not in run:
        run["validation_before"] = evaluator(model)[VALIDATION_METRIC]
        (run_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")
    rows = Dataset.load_from_disk(str(run_dir / "rows"))
    trainer, last = _train(model, rows, evaluator, run_dir, settings, progress=progress, callbacks=callbacks)
    after = evaluator(trainer.model)[VALIDATION_METRIC]

    manifest = {
        "kind": "cross-encoder reranker",
        "base_model": base_name, "base_model_folder": str(base_folder),
        "miner": miner_name, "miner_folder": str(miner_folder),
        **input_record(pairs_path, eval_sets, eval_fields),
        "counts": {"pairs": n_pairs, "contaminated": contaminated, "training": len(training),
                   "with_hard_negatives": run["with_hard_negatives"], "rows": len(rows),
                   "validation": len(validation)},
        "negative_mining": "dense: the miner over the training passages, the pair's own excluded",
        "settings": dataclasses.asdict(settings),
        "layers": trainer.model.config.num_hidden_layers,
        **outcome_record(trainer, run, VALIDATION_METRIC, after, last, started),
    }
    if settings.save_dtype == "bfloat16":
        import torch

        trainer.model.to(torch.bfloat16)
    folder = save_version(trainer.model, out_dir, manifest)
    shutil.rmtree(run_dir)  # finished: the next run in this folder starts afresh, as the next version
    return folder, manifest


def _mine(run_dir: Path, miner_folder: Path, training: list[Pair], validation: list[Pair],
          settings: RerankerTuningSettings, *, progress: bool) -> int:
    """Mines the training rows and validation samples once, into ``run_dir`` (a resumed run
    trains and validates on exactly those it started with); how many pairs got hard negatives."""
    from sentence_transformers import SentenceTransformer

    miner = SentenceTransformer(str(miner_folder))
    tuples, with_hard_negatives = mine_negatives(miner, training, settings, progress=progress)
    labelled_rows(tuples).save_to_disk(str(run_dir / "rows"))
    samples = validation_samples(miner, validation, settings)
    (run_dir / "validation.json").write_text(json.dumps(samples), encoding="utf-8")
    return with_hard_negatives


def _train(model: Any, rows: Any, evaluator: Any, run_dir: Path, settings: RerankerTuningSettings, *,
           progress: bool, callbacks: Sequence[Any]) -> tuple[Any, str | None]:
    """The trainer after training, resumed from the last checkpoint in ``run_dir`` if any, and that checkpoint."""
    import torch
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import EarlyStoppingCallback
    from transformers.trainer_utils import get_last_checkpoint

    arguments = CrossEncoderTrainingArguments(
        **checkpointed_schedule(settings, len(rows), run_dir, VALIDATION_METRIC, progress=progress))
    # each positive weighs as much as its negatives together, so "all irrelevant" is no easy minimum
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(settings.negatives_per_pair)))
    trainer = CrossEncoderTrainer(
        model=model, args=arguments, train_dataset=rows, loss=loss, evaluator=evaluator,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=settings.patience), *callbacks])
    last = get_last_checkpoint(str(run_dir))
    trainer.train(resume_from_checkpoint=last)
    return trainer, last
