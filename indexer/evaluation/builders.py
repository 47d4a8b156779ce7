"""Retrieval sets in BEIR form, built from the shared domain data.

    covidqa    question -> the passage(s) of its paper that hold the answer span
    pubmedqa   question -> its own abstract among all abstracts
    tatqa      question -> its own context (a report table and its paragraphs)
    medquad    question -> its own answer among all distinct answers

    python -m indexer.evaluation.builders covidqa OUT_DIR [--limit N]

The data folder is :func:`indexer.shared_data.data_dir` (``$SHARED_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from indexer import native, shared_data
from indexer.evaluation.beir import BeirSet, CorpusDoc, take_queries, write_beir

# COVID-QA has answers whose ``answer_start`` is off by a few characters from
# the quoted text (195 of 1,080 in the dev split, by -1 to +3); the nearest
# occurrence of the text within this distance is taken as the real start.
ANSWER_START_SLACK = 16


def data_file(*parts: str) -> Path:
    path = shared_data.data_dir().joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; set {shared_data.ENV_DATA_DIR} to the shared data folder (the one holding {parts[0]}/)"
        )
    return path


def answer_span(context: str, text: str, start: int) -> tuple[int, int]:
    """``[start, end)`` of a COVID-QA answer in its context, the quoted text's
    surrounding whitespace left out (passages don't begin or end in whitespace)."""
    if not context.startswith(text, start):
        lo = max(0, start - ANSWER_START_SLACK)
        hits = [i for i in range(lo, start + ANSWER_START_SLACK + 1) if context.startswith(text, i)]
        start = min(hits, key=lambda i: abs(i - start)) if hits else start
    stripped = text.strip() or text
    start += max(text.find(stripped), 0)
    return start, start + max(len(stripped), 1)


def covidqa(max_tokens: int = 200, overlap: int = 0) -> BeirSet:
    """Each paper cut into passages of ``max_tokens`` word tokens by the native
    chunker; a question's relevant passages are those overlapping its answer
    span (usually one; two when the answer straddles a cut). Questions whose
    answer lies in no passage (e.g. in whitespace the chunker dropped) are skipped."""
    data = json.loads(data_file("covidqa", "covidqa_dev.json").read_text(encoding="utf-8"))
    paragraphs = [p for article in data["data"] for p in article["paragraphs"]]
    contexts = [p["context"] for p in paragraphs]
    spans = native.chunk(contexts, max_tokens=max_tokens, overlap=overlap)
    corpus: dict[str, CorpusDoc] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for paragraph, context, passages in zip(paragraphs, contexts, spans):
        paper = paragraph["document_id"]
        ids = [f"covid-{paper}-{k}" for k in range(len(passages))]
        for doc_id, (start, end) in zip(ids, passages):
            corpus[doc_id] = CorpusDoc(doc_id, "", context[start:end])
        for qa in paragraph["qas"]:
            relevant: dict[str, int] = {}
            for answer in qa["answers"]:
                a_start, a_end = answer_span(context, answer["text"], answer["answer_start"])
                for doc_id, (start, end) in zip(ids, passages):
                    if start < a_end and a_start < end:
                        relevant[doc_id] = 1
            if relevant:
                query_id = f"covidqa-{qa['id']}"
                queries[query_id] = qa["question"]
                qrels[query_id] = relevant
    return BeirSet(corpus, queries, qrels)


def _jsonl_gz(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def pubmedqa() -> BeirSet:
    """Corpus: each item's abstract (its ``contexts`` joined by a space, no title)."""
    corpus: dict[str, CorpusDoc] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for item in _jsonl_gz(data_file("pubmedqa", "pqal_dev.jsonl.gz")):
        doc_id = f"pubmed-{item['id']}"
        corpus[doc_id] = CorpusDoc(doc_id, "", " ".join(item["contexts"]))
        queries[str(item["id"])] = item["question"]
        qrels[str(item["id"])] = {doc_id: 1}
    return BeirSet(corpus, queries, qrels)


def render_tatqa_context(item: dict[str, Any]) -> str:
    """The table as lines of cells joined by `` | `` (blank rows dropped), then the paragraphs in order."""
    rows = [[str(cell).strip() for cell in row] for row in item["table"]["table"]]
    table = "\n".join(" | ".join(row).strip() for row in rows if any(row))
    paragraphs = sorted(item["paragraphs"], key=lambda p: p.get("order", 0))
    return "\n\n".join([table, *(p["text"].strip() for p in paragraphs)]).strip()


def tatqa() -> BeirSet:
    corpus: dict[str, CorpusDoc] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    items = json.loads(data_file("tatqa", "tatqa_dev.json").read_text(encoding="utf-8"))
    for item in items:
        doc_id = f"tatqa-{item['table']['uid']}"
        corpus[doc_id] = CorpusDoc(doc_id, "", render_tatqa_context(item))
        for q in item["questions"]:
            queries[q["uid"]] = q["question"]
            qrels[q["uid"]] = {doc_id: 1}
    return BeirSet(corpus, queries, qrels)


def _unique(base: str, taken: set[str] | dict[str, Any]) -> str:
    """``base``, or ``base-2``, ``base-3``… when taken (MedQuAD repeats a few source/id pairs)."""
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def medquad(limit: int | None = None) -> BeirSet:
    """The first ``limit`` records (all by default). Identical answers are one
    corpus document, named after the first record that has it."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    data_file("medquad", "medquad.jsonl.gz")
    corpus: dict[str, CorpusDoc] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    doc_of_answer: dict[str, str] = {}
    for n, record in enumerate(shared_data.iter_medquad()):
        if limit is not None and n >= limit:
            break
        record_id = f"{record['source']}-{record['id']}"
        answer = record["answer"].strip()
        doc_id = doc_of_answer.get(answer)
        if doc_id is None:
            doc_id = _unique(f"medquad-{record_id}", corpus)
            doc_of_answer[answer] = doc_id
            corpus[doc_id] = CorpusDoc(doc_id, "", answer)
        query_id = _unique(record_id, queries)
        queries[query_id] = record["question"]
        qrels[query_id] = {doc_id: 1}
    return BeirSet(corpus, queries, qrels)


BUILDERS: dict[str, Callable[..., BeirSet]] = {
    "covidqa": covidqa,
    "pubmedqa": pubmedqa,
    "tatqa": tatqa,
    "medquad": medquad,
}


def build(name: str, limit: int | None = None) -> BeirSet:
    """Builds set ``name``; ``limit`` keeps its first N queries (MedQuAD: its
    first N records, so its corpus shrinks too)."""
    if name not in BUILDERS:
        raise ValueError(f"unknown set {name!r}; choose one of {', '.join(BUILDERS)}")
    if name == "medquad":
        return medquad(limit)
    return take_queries(BUILDERS[name](), limit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m indexer.evaluation.builders", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(BUILDERS))
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--limit", type=int, help="keep the first N queries (MedQuAD: the first N records)")
    args = parser.parse_args(argv)
    try:
        beir = build(args.name, args.limit)
    except (ValueError, OSError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    paths = write_beir(beir, args.out_dir)
    print(f"{args.name}: {len(beir.queries)} queries, {len(beir.corpus)} corpus docs, "
          f"{sum(map(len, beir.qrels.values()))} qrels -> {', '.join(map(str, paths))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
