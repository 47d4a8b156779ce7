"""Chunk titles (``IndexSettings.chunk_titles``) on MedQuAD retrieval: the same
queries against the same corpus indexed three ways, in one run.

Run::

    SHARED_DATA_DIR=/work/shared/data .venv/bin/python bench/chunk_titles.py           # 300 queries
    SHARED_DATA_DIR=/work/shared/data .venv/bin/python bench/chunk_titles.py --quick   # 60 queries

Writes ``bench/out/chunk_titles.{json,md}``.

Queries: MedQuAD questions drawn at random with a fixed seed from all 16,407
records. Each query's one relevant document is its own answer. Corpus: the
distinct answers of every condition (``focus``) a drawn question is about, so
that the other answers about the same condition (its symptoms, causes, outlook
...) compete, then answers drawn at random from the rest, up to ``--corpus``
documents. Chunks of 200 tokens with 32 tokens of overlap, bundled MiniLM, near
duplicates kept (so no relevant answer is dropped).

Variants, each a fresh index of the same documents:

- ``off``: chunks indexed alone (the default setting).
- ``question``: titled by the answer's MedQuAD question. This flatters the
  setting: the relevant document carries the query itself, which real documents
  won't.
- ``focus``: titled by the condition's name, the title a user's document about
  it is likely to have. This is the figure to go by.

Reported per variant and search mode: recall@3 (the passages the service reads)
and nDCG@10 over documents, each document ranked by its best chunk.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import env_markdown, env_info, md_table, parse_args, write_results  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from indexer import shared_data  # noqa: E402
from indexer.evaluation.metrics import ndcg_at_k, recall_at_k  # noqa: E402
from indexer.evaluation.runner import search_run  # noqa: E402
from indexer.index import Index  # noqa: E402
from indexer.loaders import Document  # noqa: E402
from indexer.settings import IndexSettings  # noqa: E402

SEED = 13
VARIANTS = {"off": None, "question": "question", "focus": "focus"}  # variant -> the record field used as title
MODES = ("hybrid", "dense", "bm25")
SEARCH_K = 30  # chunks per query: enough for 10 distinct documents


def build_set(n_queries: int, corpus_size: int) -> tuple[dict[str, dict[str, str]], dict[str, str], dict[str, str]]:
    """``(corpus: doc id -> first record with that answer, queries: id -> question, qrels: query id -> doc id)``."""
    records = list(shared_data.iter_medquad())
    first_with: dict[str, dict[str, str]] = {}
    for r in records:
        first_with.setdefault(r["answer"].strip(), r)
    doc_of = {answer: f"a{n}" for n, answer in enumerate(first_with)}
    rng = random.Random(SEED)
    drawn = rng.sample([r for r in records if r["answer"].strip()], n_queries)
    queries = {f"q{n}": r["question"] for n, r in enumerate(drawn)}
    qrels = {f"q{n}": doc_of[r["answer"].strip()] for n, r in enumerate(drawn)}
    foci = {r["focus"] for r in drawn}
    chosen = [a for a, r in first_with.items() if r["focus"] in foci]
    rest = [a for a, r in first_with.items() if r["focus"] not in foci]
    chosen += rng.sample(rest, max(0, min(len(rest), corpus_size - len(chosen))))
    return {doc_of[a]: {**first_with[a], "answer": a} for a in chosen}, queries, qrels


def documents(corpus: dict[str, dict[str, str]], title_field: str | None) -> list[Document]:
    docs = []
    for doc_id, r in corpus.items():
        metadata: dict[str, str | int | float | bool | None] = {"focus": r["focus"], "question": r["question"]}
        if title_field:
            metadata["title"] = r[title_field]
        docs.append(Document(doc_id=doc_id, text=r["answer"], source=f"medquad:{doc_id}", metadata=metadata))
    return docs


def run_variant(corpus: dict[str, dict[str, str]], queries: dict[str, str], title_field: str | None,
                folder: Path) -> dict:
    settings = IndexSettings(chunk_titles=title_field is not None, near_duplicates="keep")
    with Index.open(folder, settings) as index:
        report = index.ingest_documents(documents(corpus, title_field))
        out: dict = {"chunks": report.chunks, "ingest_s": report.seconds, "skipped": len(report.skipped), "runs": {}}
        for mode in MODES:
            out["runs"][mode] = search_run(index, queries, mode=mode, k=SEARCH_K)
    return out


def scores(run: dict[str, list[str]], qrels: dict[str, str]) -> dict[str, object]:
    per_query = {q: (recall_at_k(run[q], {d}, 3), ndcg_at_k(run[q], {d: 1}, 10)) for q, d in qrels.items()}
    n = len(per_query)
    return {"recall@3": sum(r for r, _ in per_query.values()) / n, "ndcg@10": sum(g for _, g in per_query.values()) / n,
            "per_query_recall@3": {q: r for q, (r, _) in per_query.items()}}


def main() -> None:
    args = parse_args(__doc__, extra={
        "--queries": {"type": int, "default": None, "help": "queries drawn (default 300; 60 with --quick)"},
        "--corpus": {"type": int, "default": None, "help": "corpus documents (default 2500; 400 with --quick)"},
    })
    n_queries = args.queries or (60 if args.quick else 300)
    corpus_size = args.corpus or (400 if args.quick else 2500)
    corpus, queries, qrels = build_set(n_queries, corpus_size)
    print(f"{len(queries)} queries, {len(corpus)} corpus documents (seed {SEED})", flush=True)
    results: dict = {"queries": len(queries), "corpus": len(corpus), "seed": SEED, "search_k": SEARCH_K, "variants": {}}
    with tempfile.TemporaryDirectory(prefix="chunk-titles-") as tmp:
        for name, field in VARIANTS.items():
            started = time.perf_counter()
            v = run_variant(corpus, queries, field, Path(tmp) / name)
            v["scores"] = {mode: scores(run, qrels) for mode, run in v.pop("runs").items()}
            results["variants"][name] = v
            hybrid = v["scores"]["hybrid"]
            print(f"{name:<9} {v['chunks']} chunks, ingest {v['ingest_s']:.0f} s, total {time.perf_counter() - started:.0f} s;"
                  f" hybrid R@3 {hybrid['recall@3']:.3f} nDCG@10 {hybrid['ndcg@10']:.3f}", flush=True)
    off = results["variants"]["off"]["scores"]
    rows = []
    for name, v in results["variants"].items():
        for mode in MODES:
            s = v["scores"][mode]
            base = off[mode]["per_query_recall@3"]
            won = sum(s["per_query_recall@3"][q] > base[q] for q in base)
            lost = sum(s["per_query_recall@3"][q] < base[q] for q in base)
            rows.append([name, mode, f"{s['recall@3']:.3f}", f"{s['ndcg@10']:.3f}",
                         "—" if name == "off" else f"+{won} / −{lost}"])
    table = md_table(["titles", "mode", "recall@3", "nDCG@10", "queries R@3 gained / lost vs off"], rows)
    markdown = "\n\n".join([
        "## Chunk titles on MedQuAD retrieval",
        f"{len(queries)} MedQuAD questions (seed {SEED}) against {len(corpus)} distinct answers (every answer about "
        f"the drawn questions' conditions, the rest drawn at random); one relevant answer per question; "
        f"bundled MiniLM, 200-token chunks. `question` titles carry the query itself into the relevant document "
        f"and flatter the setting; `focus` (the condition's name) is the honest figure.",
        table, env_markdown(env_info()),
    ])
    print(table)
    path = write_results("chunk_titles", results, markdown)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
