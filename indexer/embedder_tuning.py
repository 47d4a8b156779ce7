"""Tuning a copy of the embedder on (question, gold passage) pairs of a curated corpus.

    indexer tune-embedder --pairs curated/qa.jsonl --out models/embedder \\
        [--base MODEL_DIR] [--eval-set eval/medquad.jsonl ...] [--epochs 1] [--batch-size 32]
    INDEXER_EMBEDDING_MODEL=models/embedder/v1 indexer ingest docs/ --index new-index

:func:`tune_embedder` reads top to bottom: read the pairs → drop the pairs whose question
overlaps an evaluation set → split off a seeded validation part → mine hard negatives for each
training pair with the base model (dense search over the training passages, the pair's own
passage excluded) → train with the multiple-negatives ranking loss, scoring retrieval on the
validation part as it goes, keeping the best checkpoint and stopping early → save the model as
``OUT/v1``, ``OUT/v2`` ... with a ``tuning.json`` manifest.

Pairs: JSONL, one object per line with a ``question`` and a ``passage`` string. The curated
corpus format (``question``, ``answer``, optional ``context``) works as it is: its ``context``
(the oracle passage), else its ``answer``, is the passage.

Resuming: checkpoints go to ``OUT/run/``. Re-run with the same pairs, evaluation sets, base
model and settings, an interrupted run continues from its last checkpoint; a finished run
removes ``OUT/run/``, so the next run trains afresh into the next version.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer import native
from indexer.jsonl import BadLines, iter_text_records
from indexer.tuning_run import (
    RUN_FOLDER, checkpointed_schedule, input_record, local_model_folder, open_run, outcome_record,
    run_fingerprint, save_version,
)

MIN_VALIDATION_PAIRS = 2  # with one, every model ranks the only passage first
MIN_TRAINING_PAIRS = 2
VALIDATION_METRIC = "validation_cosine_ndcg@10"  # the index ranks by cosine (normalised inner product)


@dataclass(frozen=True)
class TuningSettings:
    epochs: int = field(default=1, metadata={"help": "passes over the training pairs"})
    batch_size: int = field(default=32, metadata={"help": "pairs per step; the others' passages are negatives"})
    learning_rate: float = field(default=2e-5, metadata={"help": "peak learning rate (AdamW, linear decay)"})
    warmup_fraction: float = field(default=0.1, metadata={"help": "share of the steps spent warming up, 0..1"})
    validation_fraction: float = field(default=0.1, metadata={"help": "share of the pairs held out for validation"})
    evaluations_per_epoch: int = field(default=4, metadata={"help": "validation runs (and checkpoints) per epoch"})
    patience: int = field(default=2, metadata={"help": "validation runs without improvement before stopping"})
    negatives_per_pair: int = field(default=1, metadata={"help": "hard negatives mined for each training pair"})
    negative_margin: float = field(default=0.05, metadata={"help": "skip negatives within this share of gold's score"})
    """A candidate almost as close to the question as the gold passage is often a second right
    answer (MedQuAD describes one condition on several sites); training against it would hurt."""
    max_seq_length: int = field(default=256, metadata={"help": "tokens per text; longer passages are cut"})
    attention_dropout: float = field(default=0.0, metadata={"help": "dropout of attention weights in training"})
    """Not the model's own 0.1 (BERT-family models): with it, torch materialises every attention matrix,
    which costs 2.4 times the CPU time on a 2-core CPU (MiniLM, 500 MedQuAD pairs: 415 → 170 CPU s)."""
    decontam_ngram: int = field(default=13, metadata={"help": "drop pairs sharing this many words in a row with evals"})
    seed: int = field(default=0, metadata={"help": "seed of the split, the batches and the initialisation"})

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "evaluations_per_epoch", "patience", "negatives_per_pair",
                     "decontam_ngram"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("learning_rate", "validation_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        for name in ("warmup_fraction", "negative_margin", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.max_seq_length < 16:
            raise ValueError(f"max_seq_length must be at least 16, got {self.max_seq_length}")


@dataclass(frozen=True)
class Pair:
    question: str
    passage: str


def read_pairs(path: Path) -> list[Pair]:
    """The pairs of a JSONL file; ``ValueError`` naming the first bad line, or an empty file."""
    pairs = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                pairs.append(_pair(json.loads(raw)))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ValueError(f"{path}:{number}: {exc}; each line must be a JSON object with a 'question' "
                                 "and a 'passage' string (or the curated 'answer'/'context')") from None
    if not pairs:
        raise ValueError(f"{path} holds no pairs: add JSON lines with a 'question' and a 'passage'")
    return pairs


def _pair(record: object) -> Pair:
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("'question' is missing or empty")
    for name in ("passage", "context", "answer"):
        passage = record.get(name)
        if isinstance(passage, str) and passage.strip():
            return Pair(question.strip(), passage.strip())
    raise ValueError("'passage' is missing or empty")


def read_eval_questions(paths: Sequence[Path], fields: Sequence[str] = ("question",)) -> list[str]:
    """The ``fields`` texts of every line of the evaluation files (lines without them are skipped)."""
    texts: list[str] = []
    for path in paths:
        found = [text for name in fields for _, text, _ in iter_text_records(path, name, BadLines()) if text]
        if not found:
            raise ValueError(f"no {' or '.join(map(repr, fields))} texts in the eval set {path}; pass --eval-field")
        texts += found
    return texts


def drop_contaminated(pairs: list[Pair], eval_questions: list[str], ngram: int) -> tuple[list[Pair], int]:
    """The pairs whose question neither shares a word ``ngram`` with an eval question nor has
    exactly its words, and how many were dropped. The second test is needed because most
    questions are shorter than both the n-gram and ``native.decontaminate``'s minimum length
    (8 words, as elsewhere in the project), so it would let a verbatim eval question through."""
    if not eval_questions:
        return pairs, 0
    questions = [p.question for p in pairs]
    overlaps, _ = native.decontaminate(questions, eval_questions, ngram=ngram, min_words=min(8, ngram))
    dirty = {o.train_index for o in overlaps}
    eval_words = {_words(q) for q in eval_questions}
    dirty |= {i for i, p in enumerate(pairs) if _words(p.question) in eval_words}
    return [p for i, p in enumerate(pairs) if i not in dirty], len(dirty)


def _words(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"\w+", text.lower()))  # the words the Rust check compares


def split_validation(pairs: list[Pair], settings: TuningSettings) -> tuple[list[Pair], list[Pair]]:
    """``(training, validation)``: a seeded ``validation_fraction`` of the pairs held out."""
    held = round(len(pairs) * settings.validation_fraction)
    if held < MIN_VALIDATION_PAIRS or len(pairs) - held < MIN_TRAINING_PAIRS:
        needed = max(math.ceil(MIN_VALIDATION_PAIRS / settings.validation_fraction),
                     MIN_VALIDATION_PAIRS + MIN_TRAINING_PAIRS)
        raise ValueError(f"{len(pairs)} pairs are too few for a {settings.validation_fraction:.0%} validation split "
                         f"(at least {needed} needed): add pairs or change --validation-fraction")
    order = list(range(len(pairs)))
    random.Random(settings.seed).shuffle(order)
    return [pairs[i] for i in sorted(order[held:])], [pairs[i] for i in sorted(order[:held])]


def prepare_pairs(pairs_path: Path, settings: TuningSettings, eval_sets: Sequence[Path],
                  eval_fields: Sequence[str]) -> tuple[int, int, list[Pair], list[Pair]]:
    """``(pairs read, pairs dropped as eval overlaps, training, validation)``; checks the input
    whole before anything is trained or written."""
    pairs = read_pairs(pairs_path)
    kept, contaminated = drop_contaminated(pairs, read_eval_questions(eval_sets, eval_fields), settings.decontam_ngram)
    if not kept:
        raise ValueError(f"all {len(pairs)} pairs of {pairs_path} overlap the eval sets: none is left to train on")
    training, validation = split_validation(kept, settings)
    return len(pairs), contaminated, training, validation


def base_model_folder(name: str | None, option: str = "--base") -> tuple[str, Path]:
    """``(name, folder)`` of an embedder: ``name``, or the index's embedder by default."""
    from indexer.settings import IndexSettings

    name = name or IndexSettings.from_env().embedding_model
    return name, local_model_folder(name, f"{option} with a local sentence-transformers model folder (the "
                                          "default is the index's embedder, INDEXER_EMBEDDING_MODEL)")


def mine_negatives(model: Any, training: list[Pair], settings: TuningSettings, *,
                   progress: bool) -> tuple[Any, int]:
    """``(rows, mined)``: a dataset of (question, passage, negative_1 ... negative_n) rows, one per
    training pair, and how many pairs got hard negatives. Those are the passages of the other
    training pairs that the base model ranks highest for the question, its own excluded, minus
    those within ``negative_margin`` of its score. A pair left with too few keeps random other
    passages instead, so that no pair is lost: its in-batch negatives still teach."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    passages = list(dict.fromkeys(p.passage for p in training))
    if len(passages) <= settings.negatives_per_pair:
        raise ValueError(f"{len(passages)} training passages are too few for {settings.negatives_per_pair} "
                         "negatives per pair: add pairs or lower --negatives-per-pair")
    columns = {"question": [p.question for p in training], "passage": [p.passage for p in training]}
    mined = mine_hard_negatives(Dataset.from_dict(columns), model, num_negatives=settings.negatives_per_pair,
                                relative_margin=settings.negative_margin, sampling_strategy="top",
                                output_format="n-tuple", batch_size=settings.batch_size, verbose=progress)
    rows = mined.to_dict()
    negatives = [f"negative_{i}" for i in range(1, settings.negatives_per_pair + 1)]
    have = set(zip(rows["question"], rows["passage"], strict=True))
    pick = random.Random(settings.seed)
    for p in training:
        if (p.question, p.passage) in have:
            continue
        others = [t for t in passages if t != p.passage]
        rows["question"].append(p.question)
        rows["passage"].append(p.passage)
        for column, negative in zip(negatives, pick.sample(others, len(negatives)), strict=True):
            rows[column].append(negative)
    return Dataset.from_dict(rows), len(mined)


def validation_evaluator(validation: list[Pair], batch_size: int) -> Any:
    """Retrieval of the validation questions' passages among all validation passages (nDCG@10).
    Not among all passages: this runs several times an epoch, and on a CPU it has to stay cheap."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.util import cos_sim

    questions = {q: f"q{i}" for i, q in enumerate(dict.fromkeys(p.question for p in validation))}
    passages = {t: f"p{i}" for i, t in enumerate(dict.fromkeys(p.passage for p in validation))}
    relevant: dict[str, set[str]] = {}
    for p in validation:
        relevant.setdefault(questions[p.question], set()).add(passages[p.passage])
    return InformationRetrievalEvaluator(
        queries={i: q for q, i in questions.items()}, corpus={i: t for t, i in passages.items()},
        relevant_docs=relevant, name="validation", score_functions={"cosine": cos_sim}, batch_size=batch_size,
        accuracy_at_k=[1, 10], precision_recall_at_k=[10], map_at_k=[10], write_csv=False)


def tune_embedder(pairs_path: Path, out_dir: Path, settings: TuningSettings | None = None, *,
                  base: str | None = None, eval_sets: Sequence[Path] = (), eval_fields: Sequence[str] = ("question",),
                  progress: bool = True, callbacks: Sequence[Any] = ()) -> tuple[Path, dict[str, Any]]:
    """Trains a copy of ``base`` on the pairs and returns ``(OUT/vN, its manifest)``.
    ``callbacks``: extra ``transformers.TrainerCallback`` objects (a progress sink, a stop signal)."""
    started = time.perf_counter()
    settings = settings or TuningSettings()
    base_name, base_folder = base_model_folder(base)
    n_pairs, contaminated, training, validation = prepare_pairs(pairs_path, settings, eval_sets, eval_fields)

    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from transformers.trainer_utils import get_last_checkpoint

    model = SentenceTransformer(str(base_folder),
                                config_kwargs={"attention_probs_dropout_prob": settings.attention_dropout})
    model.max_seq_length = settings.max_seq_length
    evaluator = validation_evaluator(validation, settings.batch_size)
    run_dir = out_dir / RUN_FOLDER
    run = open_run(run_dir, run_fingerprint(pairs_path, eval_sets, eval_fields, settings, base_folder))
    if "validation_before" not in run:
        run["validation_before"] = evaluator(model)[VALIDATION_METRIC]
        rows, run["with_hard_negatives"] = mine_negatives(model, training, settings, progress=progress)
        # kept so that a resumed run trains on exactly the rows it started with
        rows.save_to_disk(str(run_dir / "rows"))
        (run_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")
    rows = Dataset.load_from_disk(str(run_dir / "rows"))
    last = get_last_checkpoint(str(run_dir))
    trainer = _trainer(model, rows, evaluator, run_dir, settings, progress=progress, callbacks=callbacks)
    trainer.train(resume_from_checkpoint=last)
    after = evaluator(trainer.model)[VALIDATION_METRIC]

    manifest = {
        "base_model": base_name, "base_model_folder": str(base_folder),
        **input_record(pairs_path, eval_sets, eval_fields),
        "counts": {"pairs": n_pairs, "contaminated": contaminated, "training": len(training),
                   "with_hard_negatives": run["with_hard_negatives"], "validation": len(validation)},
        "negative_mining": "dense: the base model over the training passages, the pair's own excluded",
        "settings": dataclasses.asdict(settings),
        **outcome_record(trainer, run, VALIDATION_METRIC, after, last, started),
    }
    folder = save_version(trainer.model, out_dir, manifest)
    shutil.rmtree(run_dir)  # finished: the next run in this folder starts afresh, as the next version
    return folder, manifest


def _trainer(model: Any, rows: Any, evaluator: Any, run_dir: Path, settings: TuningSettings, *,
             progress: bool, callbacks: Sequence[Any]) -> Any:
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import EarlyStoppingCallback

    arguments = SentenceTransformerTrainingArguments(
        **checkpointed_schedule(settings, len(rows), run_dir, VALIDATION_METRIC, progress=progress),
        # a passage twice in a batch would be its own in-batch negative
        batch_sampler=BatchSamplers.NO_DUPLICATES)
    return SentenceTransformerTrainer(
        model=model, args=arguments, train_dataset=rows, loss=MultipleNegativesRankingLoss(model),
        evaluator=evaluator,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=settings.patience), *callbacks])
