"""Our claim check beside RAGFlow's citation rule, on the same model answers.

    .venv/bin/assistant eval --sets pubmedqa,covidqa,tatqa,medquad --systems base+rag --out .cache/eval
    .venv/bin/python bench/attribution_baseline.py --eval .cache/eval

Reads the raw answers of an ``assistant eval`` run (``answers.jsonl``), retrieves each
question's passages again exactly as the run did (the unanswerable split without its
gold documents), and judges every answer three ways:

- **ours**: :func:`assistant.grounding.check.finalize` as the service runs it (claims
  verified by the overlap verifier with MiniLM, system-made citations, unsupported
  sentences dropped, the extractive fallback in ``auto`` mode);
- **RAGFlow's rule** (``insert_citations`` in RAGFlow's ``rag/nlp/search.py``): each
  answer sentence of 5+ characters is cited with the passages scoring above 99% of its
  best ``0.1 × token similarity + 0.9 × vector similarity``, the threshold starting at
  0.63 and multiplied by 0.8 until some sentence gets a citation or it falls to 0.3; the
  answer is shown whole, cited or not. Token similarity here is the share of the
  sentence's content words in the passage (RAGFlow weights its own tokenizer's terms);
- **ours, fp32 vectors**: our check with the embedder in fp32 throughout, as before the
  claim check compared bf16 vectors (``Embedder.embed_to_compare``): the speed-up and
  whether it changes any decision, on the same answers.

Per set and system: coverage (answers shown on the answerable split), shown accuracy,
citation precision (shown answers citing a gold document), hallucination (answers shown
on the unanswerable split), and the median time each check takes per answer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import env_info, env_markdown, md_table, write_results  # noqa: E402

RAGFLOW_START, RAGFLOW_FLOOR, RAGFLOW_STEP = 0.63, 0.3, 0.8
RAGFLOW_TOKEN_WEIGHT, RAGFLOW_VECTOR_WEIGHT = 0.1, 0.9


def ragflow_citations(answer: str, passages: list[Any], embed: Any) -> list[int]:
    """The passage numbers RAGFlow's rule cites anywhere in ``answer``."""
    import re

    from assistant.grounding.verify import content_words

    pieces = [p for p in re.split(r"(?<=[.!?;])\s+", answer.strip()) if len(p) >= 5]
    if not pieces or not passages:
        return []
    vectors = embed([*pieces, *[p.text for p in passages]])
    vector_sim = vectors[: len(pieces)] @ vectors[len(pieces):].T
    passage_words = [set(content_words(p.text)) for p in passages]
    token_sim = np.array([[len(set(content_words(s)) & words) / max(len(set(content_words(s))), 1)
                           for words in passage_words] for s in pieces])
    sim = RAGFLOW_TOKEN_WEIGHT * token_sim + RAGFLOW_VECTOR_WEIGHT * vector_sim
    cites: dict[int, list[int]] = {}
    threshold = RAGFLOW_START
    while threshold > RAGFLOW_FLOOR and not cites:
        for i in range(len(pieces)):
            best = float(sim[i].max()) * 0.99
            if best >= threshold:
                cites[i] = [j for j in range(len(passages)) if sim[i, j] > best][:4]
        threshold *= RAGFLOW_STEP
    return sorted({passages[j].number for found in cites.values() for j in found})


def judge_set(name: str, records: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    from assistant.evaluation.answers import retrieve
    from assistant.evaluation.builtin_sets import builtin_set, set_index
    from assistant.evaluation.scoring import score_answer
    from assistant.generation.model_files import cache_dir
    from assistant.grounding.check import finalize
    from assistant.grounding.claims import is_refusal
    from assistant.grounding.verify import OverlapVerifier
    from indexer.index import Index

    items, beir = builtin_set(name, limit=None, split="heldout")
    by_id = {i.id: i for i in items}
    rows: dict[str, dict[str, list[Any]]] = {}
    with Index.open(set_index(name, beir, cache_dir() / "eval-index")) as index:
        embed = index.embedder.embed_to_compare  # what the service compares claims with
        verifier = OverlapVerifier(embed)
        # the check as it was before bf16 comparison vectors: fp32, the stored vectors' precision
        fp32 = OverlapVerifier(index.embedder.embed)
        for record in records:
            item = by_id[record["id"]]
            unanswerable = record["split"] == "unanswerable"
            [passages] = retrieve(index, [item], settings["top_k"], drop_gold=unanswerable)
            started = time.perf_counter()
            ours = finalize(record["answer"], passages, verifier, min_score=settings["min_score"],
                            mode=settings.get("answer_mode", "generative"), question=item.question, embed=embed)
            ours_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            before = finalize(record["answer"], passages, fp32, min_score=settings["min_score"],
                              mode=settings.get("answer_mode", "generative"), question=item.question,
                              embed=index.embedder.embed)
            before_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            cited = ragflow_citations(record["answer"], passages, embed)
            ragflow_ms = (time.perf_counter() - started) * 1000
            ragflow_shown = bool(record["answer"].strip()) and not is_refusal(record["answer"])
            by_number = {p.number: p for p in passages}
            for system, shown, text, numbers, ms in (
                    ("ours", ours.grounded, ours.answer, [int(c["number"]) for c in ours.citations], ours_ms),
                    ("ours, fp32 vectors", before.grounded, before.answer,
                     [int(c["number"]) for c in before.citations], before_ms),
                    ("ragflow", ragflow_shown, record["answer"], cited, ragflow_ms)):
                row = rows.setdefault(system, {"shown": [], "accuracy": [], "cites_gold": [], "hallucinated": [],
                                               "ms": []})
                row["ms"].append(ms)
                if unanswerable:
                    row["hallucinated"].append(float(shown))
                    continue
                row["shown"].append(float(shown))
                row["accuracy"].append(score_answer(text, item.answer, item.answer_type) if shown else 0.0)
                if shown and numbers:
                    row["cites_gold"].append(float(any(by_number[n].doc_id in item.doc_ids for n in numbers))
                                             if item.doc_ids else None)

    def mean(values: list[Any]) -> float | None:
        kept = [v for v in values if v is not None]
        return round(sum(kept) / len(kept), 4) if kept else None

    return {system: {"coverage": mean(r["shown"]), "accuracy": mean(r["accuracy"]),
                     "citation_precision": mean(r["cites_gold"]), "hallucination_rate": mean(r["hallucinated"]),
                     "answerable_n": len(r["shown"]), "unanswerable_n": len(r["hallucinated"]),
                     "ms_p50": round(statistics.median(r["ms"]), 1) if r["ms"] else None}
            for system, r in rows.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", type=Path, required=True, help="an `assistant eval` output folder (built-in sets)")
    parser.add_argument("--system", default="base+rag", help="whose answers to judge (base+rag or adapter+rag)")
    parser.add_argument("--answer-mode", choices=("generative", "auto"), help="judge ours in this mode instead of the run's")
    args = parser.parse_args(argv)
    report = json.loads((args.eval / "report.json").read_text(encoding="utf-8"))
    if args.answer_mode:
        report["settings"]["answer_mode"] = args.answer_mode
    records: dict[str, list[dict[str, Any]]] = {}
    for line in (args.eval / "answers.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["system"] == args.system and record["split"] in ("answerable", "unanswerable"):
            records.setdefault(record["set"], []).append(record)
    if not records:
        raise SystemExit(f"no {args.system} answers in {args.eval / 'answers.jsonl'}")
    results = {"system": args.system, "settings": report["settings"], "env": env_info(),
               "sets": {name: judge_set(name, rows, report["settings"]) for name, rows in records.items()}}
    table = []
    for name, by_check in results["sets"].items():
        for check, r in by_check.items():
            table.append([name, check, r["answerable_n"], r["coverage"], r["accuracy"], r["citation_precision"],
                          r["hallucination_rate"], r["ms_p50"]])
    markdown = "\n".join([
        f"# Attribution: ours ({report['settings'].get('answer_mode', 'generative')} mode) against RAGFlow's rule "
        f"({args.system} answers of {args.eval})", "",
        md_table(["set", "check", "n", "coverage", "shown accuracy", "citation precision",
                  "hallucination (unanswerable)", "ms per answer (p50)"], table), "", env_markdown(results["env"])])
    path = write_results(f"attribution_baseline-{report['settings'].get('answer_mode', 'generative')}", results, markdown)
    print(markdown)
    print(f"written: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
