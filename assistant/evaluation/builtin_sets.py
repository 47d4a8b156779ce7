"""The built-in evaluation sets, from the real data in ``../shared/data``.

    items, documents = builtin_set("covidqa", limit=100)

Each set's documents are those of :mod:`indexer.evaluation.builders` (so ``doc_ids``
name the same passages the retrieval benchmarks use); its gold answers come from the
raw files:

- ``pubmedqa``: yes/no/maybe decisions, accuracy; documents: the abstracts.
- ``covidqa``: extractive answers, token F1; documents: 200-token passages of the papers.
- ``tatqa``: numbers with their scale (``-12.6 million``), else the answer span(s),
  token F1; documents: each report's table and paragraphs.
- ``medquad``: free answers (the answer text itself), token F1; documents: the answers.

A set's index is built once under ``cache_dir()/eval-index/<name>`` by :func:`set_index`.

**Held-out split.** ``split="heldout"`` (the default) keeps only questions that the
example recipe (``bench/tune_bench.py``) does not train on, so an adapter tuned by it is
scored on questions it never saw: the COVID-QA questions of every 5th paper, 100 PubMedQA
items drawn with a fixed seed, the MedQuAD questions whose record and answer are not
among the 900 training pairs (every other one of them, by a hash of its id), and the TAT-QA
questions of every other report (finance: not in the recipe, so it shows how a medical adapter
does outside its field). The items come
in a fixed shuffled order, so ``limit`` takes a sample spread over the set rather than
its first papers.

**Calibration split.** ``split="calibration"`` is the rest: the recipe's training side
(and TAT-QA's other reports, and the other half of MedQuAD's untrained questions), where
``assistant calibrate`` fits the answerability calibrator, so that nothing reported on the
held-out split was fitted on. MedQuAD's training answers alone were a poor calibration side:
the recipe picked short ones (15–60 words), and a threshold fitted on them let 17% of the
held-out unanswerable questions through against 10% on its own side (BENCHMARKS.md).
"""

from __future__ import annotations

import gzip
import json
import random
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from assistant.evaluation.sets import EvalItem

BUILTIN_SETS = ("pubmedqa", "covidqa", "tatqa", "medquad")
SPLITS = ("heldout", "calibration", "all")
MEDQUAD_CORPUS = 2000  # answers indexed for the MedQuAD set: the full 16k would take 10 minutes to embed
SEED = 0
BUILTIN_SAMPLE = 30  # items per set by default: four sets × four systems in ≤ 30 minutes on 2 CPU cores
# the example recipe's split (bench/tune_bench.py trains on the rest)
HELD_OUT_PAPER_EVERY = 5  # every 5th COVID-QA paper, by id
TATQA_CALIBRATION_EVERY = 2  # every 2nd TAT-QA report (by id) is on the calibration side
PUBMEDQA_HELD_OUT = 100
MEDQUAD_TRAINING = 900
MEDQUAD_CALIBRATION_EVERY = 2  # half of the untrained MedQuAD questions calibrate, half are held out
MEDQUAD_WORDS = (15, 60)  # training answers of this many words: short enough for a 512-token example


def covidqa_held_out_papers(papers: Iterable[str]) -> set[str]:
    return set(sorted(set(papers), key=int)[::HELD_OUT_PAPER_EVERY])


def pubmedqa_held_out_ids(ids: list[str]) -> set[str]:
    order = list(range(len(ids)))
    random.Random(SEED).shuffle(order)
    return {ids[i] for i in order[:PUBMEDQA_HELD_OUT]}


def medquad_training_records() -> list[dict[str, Any]]:
    """The MedQuAD records the recipe trains on: a seeded sample of the short answers."""
    from indexer import shared_data

    lo, hi = MEDQUAD_WORDS
    records = [r for r in shared_data.iter_medquad() if lo <= len(r["answer"].split()) <= hi]
    random.Random(SEED).shuffle(records)
    return records[:MEDQUAD_TRAINING]


def _side(in_held_out: bool, split: str) -> bool:
    """Whether an item on the held-out side (or not) belongs to ``split``."""
    return split == "all" or in_held_out == (split == "heldout")


def _data(*parts: str) -> Path:
    from indexer.evaluation.builders import data_file

    return data_file(*parts)


def _pubmedqa(split: str) -> list[EvalItem]:
    with gzip.open(_data("pubmedqa", "pqal_dev.jsonl.gz"), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    held_out = pubmedqa_held_out_ids([r["id"] for r in rows])
    return [EvalItem(str(r["id"]), r["question"], r["final_decision"], "yes_no_maybe", (f"pubmed-{r['id']}",))
            for r in rows if _side(r["id"] in held_out, split)]


def _covidqa(qrels: dict[str, dict[str, int]], split: str) -> list[EvalItem]:
    data = json.loads(_data("covidqa", "covidqa_dev.json").read_text(encoding="utf-8"))
    paragraphs = [p for article in data["data"] for p in article["paragraphs"]]
    held_out = covidqa_held_out_papers({str(p["document_id"]) for p in paragraphs})
    items = []
    for paragraph in paragraphs:
        if not _side(str(paragraph["document_id"]) in held_out, split):
            continue
        for qa in paragraph["qas"]:
            query_id = f"covidqa-{qa['id']}"
            if query_id in qrels:  # the builder skips answers that fall between passages
                items.append(EvalItem(query_id, qa["question"], qa["answers"][0]["text"].strip(), "extractive",
                                      tuple(qrels[query_id])))
    return items


def _medquad(beir: Any, split: str) -> list[EvalItem]:
    items = [EvalItem(q, text, beir.corpus[next(iter(beir.qrels[q]))].text, "free", tuple(beir.qrels[q]))
             for q, text in beir.queries.items()]
    trained = medquad_training_records()
    trained_ids = {f"{r['source']}-{r['id']}" for r in trained}
    trained_texts = {r["answer"].strip() for r in trained} | {r["question"] for r in trained}
    return [i for i in items if _side(i.id not in trained_ids and not {i.question, i.answer} & trained_texts
                                      and not _medquad_calibration(i.id), split)]


def _medquad_calibration(item_id: str) -> bool:
    """Every other untrained MedQuAD question, by a stable hash of its id (Python's own
    ``hash`` of a string changes between runs)."""
    return zlib.crc32(item_id.encode("utf-8")) % MEDQUAD_CALIBRATION_EVERY == 0


def _tatqa(split: str) -> list[EvalItem]:
    contexts = json.loads(_data("tatqa", "tatqa_dev.json").read_text(encoding="utf-8"))
    reports = sorted(c["table"]["uid"] for c in contexts)
    calibration = set(reports[1::TATQA_CALIBRATION_EVERY])
    items = []
    for context in contexts:
        if not _side(context["table"]["uid"] not in calibration, split):
            continue
        doc_id = f"tatqa-{context['table']['uid']}"
        for q in context["questions"]:
            answer = q["answer"]
            if q["answer_type"] in ("arithmetic", "count") and isinstance(answer, (int, float)):
                gold, kind = f"{answer} {q['scale']}".strip(), "numeric"
            else:
                gold = ", ".join(str(a) for a in answer) if isinstance(answer, list) else str(answer)
                kind = "extractive"
            items.append(EvalItem(q["uid"], q["question"], gold, kind, (doc_id,)))
    return items


def builtin_set(name: str, limit: int | None = None, split: str = "heldout") -> tuple[list[EvalItem], Any]:
    """(items, the BeirSet whose corpus holds the documents) of a built-in set: the first
    ``limit`` items of the split, in a fixed shuffled order."""
    from indexer.evaluation import builders

    if name not in BUILTIN_SETS:
        raise ValueError(f"unknown built-in set {name!r}; choose from {', '.join(BUILTIN_SETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if name == "pubmedqa":
        items, beir = _pubmedqa(split), builders.pubmedqa()
    elif name == "covidqa":
        beir = builders.covidqa()
        items = _covidqa(beir.qrels, split)
    elif name == "tatqa":
        items, beir = _tatqa(split), builders.tatqa()
    else:
        beir = builders.medquad(MEDQUAD_CORPUS)
        items = _medquad(beir, split)
    random.Random(SEED).shuffle(items)
    return (items[:limit] if limit is not None else items), beir


def set_index(name: str, beir: Any, root: Path, embedding_model: str | None = None) -> Path:
    """The set's index folder, built on first use (its corpus as documents) with the configured
    embedder, or with ``embedding_model`` in a folder of its own (see :func:`index_root`)."""
    import dataclasses

    from indexer.evaluation.runner import corpus_documents
    from indexer.index import Index
    from indexer.settings import IndexSettings

    folder = index_root(root, embedding_model) / name
    if not (folder / ".complete").is_file():
        settings = None
        if embedding_model:
            settings = dataclasses.replace(IndexSettings.from_env(), embedding_model=embedding_model)
        with Index.open(folder, settings) as index:
            index.ingest_documents(corpus_documents(beir), progress=True)
        (folder / ".complete").write_text("", encoding="utf-8")
    return folder


def index_root(root: Path, embedding_model: str | None) -> Path:
    """Where the sets' indexes embedded by ``embedding_model`` live: ``root`` for the configured
    embedder, else a folder named by the model files' fingerprint, so that a re-tuned model
    saved at the same path gets fresh indexes instead of stale vectors."""
    if not embedding_model:
        return root
    from indexer.embedder import model_fingerprint

    fingerprint = model_fingerprint(embedding_model)
    if fingerprint is None:
        raise FileNotFoundError(f"no embedding model folder for {embedding_model} (a folder, or a cached hub id)")
    return root / f"embedder-{fingerprint[:16]}"
