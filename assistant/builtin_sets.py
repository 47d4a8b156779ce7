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
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from assistant.eval_sets import EvalItem

BUILTIN_SETS = ("pubmedqa", "covidqa", "tatqa", "medquad")
MEDQUAD_CORPUS = 2000  # answers indexed for the MedQuAD set: the full 16k would take 10 minutes to embed


def _data(*parts: str) -> Path:
    from indexer.evaluation.builders import _data_file

    return _data_file(*parts)


def _pubmedqa() -> list[EvalItem]:
    with gzip.open(_data("pubmedqa", "pqal_dev.jsonl.gz"), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [EvalItem(str(r["id"]), r["question"], r["final_decision"], "yes_no_maybe", (f"pubmed-{r['id']}",))
            for r in rows]


def _covidqa(qrels: dict[str, dict[str, int]]) -> list[EvalItem]:
    data = json.loads(_data("covidqa", "covidqa_dev.json").read_text(encoding="utf-8"))
    items = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                query_id = f"covidqa-{qa['id']}"
                if query_id in qrels:  # the builder skips answers that fall between passages
                    items.append(EvalItem(query_id, qa["question"], qa["answers"][0]["text"].strip(), "extractive",
                                          tuple(qrels[query_id])))
    return items


def _tatqa() -> list[EvalItem]:
    items = []
    for context in json.loads(_data("tatqa", "tatqa_dev.json").read_text(encoding="utf-8")):
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


def builtin_set(name: str, limit: int | None = None) -> tuple[list[EvalItem], Any]:
    """(items, the BeirSet whose corpus holds the documents) of a built-in set."""
    from indexer.evaluation import builders

    if name not in BUILTIN_SETS:
        raise ValueError(f"unknown built-in set {name!r}; choose from {', '.join(BUILTIN_SETS)}")
    if name == "pubmedqa":
        items, beir = _pubmedqa(), builders.pubmedqa()
    elif name == "covidqa":
        beir = builders.covidqa()
        items = _covidqa(beir.qrels)
    elif name == "tatqa":
        items, beir = _tatqa(), builders.tatqa()
    else:
        beir = builders.medquad(MEDQUAD_CORPUS)
        items = [EvalItem(q, text, beir.corpus[next(iter(beir.qrels[q]))].text, "free", tuple(beir.qrels[q]))
                 for q, text in beir.queries.items()]
    return (items[:limit] if limit is not None else items), beir


def set_index(name: str, beir: Any, root: Path) -> Path:
    """The set's index folder, built on first use (its corpus as documents)."""
    from indexer.evaluation.runner import corpus_documents
    from indexer.index import Index

    folder = root / name
    if not (folder / ".complete").is_file():
        with Index.open(folder) as index:
            index.ingest_documents(corpus_documents(beir), progress=True)
        (folder / ".complete").write_text("", encoding="utf-8")
    return folder
