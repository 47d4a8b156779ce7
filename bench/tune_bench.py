"""Re-tuning on this machine's CPU with the bundled SmolLM2-135M-Instruct.

Run::

    .venv/bin/python bench/tune_bench.py                       # every stage
    .venv/bin/python bench/tune_bench.py --stages data,train    # some of them
    .venv/bin/python bench/tune_bench.py --quick                # data and memory only

Stages (each reads what the earlier ones wrote under ``--work``):

``data``     an index of the 74 COVID-QA papers, the 500 PubMedQA abstracts and short MedQuAD
             answers (64-token chunks); a curated set of ≥ 2,000 pairs: COVID-QA questions of
             the training papers, PubMedQA items ("Yes. <long answer>"), MedQuAD pairs; held-out
             sets (COVID-QA questions of papers kept out of training, PubMedQA items kept out)
             in the evaluation format; then ``assistant prepare``'s builder (RAFT, 2
             distractors, oracle shown with P = 0.8, decontaminated against the held-out sets).
``train``    one epoch of ``assistant.tuning.trainer`` (NF4 4-bit base + LoRA) on the packed set:
             minutes, tokens/s, peak memory. Target: ≤ 45 minutes.
``memory``   a few steps of the same recipe with the 4-bit base and with a 16-bit base:
             peak memory and tokens/s side by side.
``quality``  base + RAG vs adapter + RAG vs adapter alone on the held-out sets (token F1 on
             COVID-QA, accuracy on PubMedQA), and the general drift of the gate.
"""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, env_info, env_markdown, md_table, write_results  # noqa: E402

STAGES = ("data", "train", "memory", "quality")
CHUNK_TOKENS, CHUNK_OVERLAP = 64, 8
SEQ_LEN = 640
BATCH, ACCUM = 4, 2


def data_dir() -> Path:
    from indexer import shared_data

    return shared_data.data_dir()


def covidqa_items() -> list[dict[str, Any]]:
    data = json.loads((data_dir() / "covidqa" / "covidqa_dev.json").read_text(encoding="utf-8"))
    items = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            paper = str(paragraph["document_id"])
            items.append({"paper": paper, "context": paragraph["context"], "qas": paragraph["qas"]})
    return items


def pubmedqa_items() -> list[dict[str, Any]]:
    with gzip.open(data_dir() / "pubmedqa" / "pqal_dev.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


class Curated(NamedTuple):
    covid: list[dict[str, Any]]  # COVID-QA paragraphs
    pubmed: list[dict[str, Any]]
    medquad: list[dict[str, Any]]  # the MedQuAD records trained on
    held_pubmed: set[Any]  # PubMedQA ids kept out of training
    pairs: list[dict[str, Any]]  # the training pairs
    covid_eval: list[dict[str, Any]]  # held-out items in the evaluation format
    pubmed_eval: list[dict[str, Any]]


def curated_pairs() -> Curated:
    """The training pairs and held-out items, split as the built-in evaluation sets are,
    so `assistant eval --sets` scores this adapter on items it never saw."""
    from assistant.evaluation.builtin_sets import covidqa_held_out_papers, medquad_training_records, pubmedqa_held_out_ids

    covid, pubmed, medquad = covidqa_items(), pubmedqa_items(), medquad_training_records()
    held_papers = covidqa_held_out_papers(c["paper"] for c in covid)
    held_pubmed = pubmedqa_held_out_ids([i["id"] for i in pubmed])

    pairs, covid_eval, pubmed_eval = [], [], []
    for c in covid:
        for qa in c["qas"]:
            answer = qa["answers"][0]["text"].strip()
            doc_id = f"covid-{c['paper']}"
            if c["paper"] in held_papers:
                covid_eval.append({"id": f"covidqa-{qa['id']}", "question": qa["question"], "answer": answer,
                                   "answer_type": "extractive", "doc_ids": [doc_id]})
            else:
                pairs.append({"question": qa["question"], "answer": answer, "source": doc_id,
                              "id": f"covidqa-{qa['id']}", "tags": ["covidqa"]})
    for item in pubmed:
        doc_id = f"pubmed-{item['id']}"
        if item["id"] in held_pubmed:
            pubmed_eval.append({"id": f"pubmedqa-{item['id']}", "question": item["question"],
                                "answer": item["final_decision"], "answer_type": "yes_no_maybe",
                                "doc_ids": [doc_id]})
        else:
            decision = item["final_decision"].capitalize()
            pairs.append({"question": item["question"], "answer": f"{decision}. {item['long_answer']}",
                          "source": doc_id, "id": f"pubmedqa-{item['id']}", "tags": ["pubmedqa"]})
    for r in medquad:
        pairs.append({"question": r["question"], "answer": r["answer"].strip(), "source": f"medquad-{r['source']}-{r['id']}",
                      "id": f"medquad-{r['source']}-{r['id']}", "tags": ["medquad"]})
    return Curated(covid, pubmed, medquad, held_pubmed, pairs, covid_eval, pubmed_eval)


def stage_data(work: Path) -> dict[str, Any]:
    from assistant.generation.model_files import load_hf_tokenizer
    from assistant.tuning.pairs import read_pairs
    from assistant.tuning.raft import RaftSettings, build_raft_set
    from indexer.index import Index
    from indexer.loaders import Document
    from indexer.settings import IndexSettings

    started = time.perf_counter()
    covid, pubmed, medquad, held_pubmed, pairs, covid_eval, pubmed_eval = curated_pairs()
    work.mkdir(parents=True, exist_ok=True)
    write_jsonl(work / "pairs.jsonl", pairs)
    write_jsonl(work / "covidqa_heldout.jsonl", covid_eval)
    write_jsonl(work / "pubmedqa_heldout.jsonl", pubmed_eval)

    docs = [Document(f"covid-{c['paper']}", c["context"], f"covidqa:{c['paper']}", {"format": "covidqa"}) for c in covid]
    docs += [Document(f"pubmed-{i['id']}", " ".join(i["contexts"]), f"pubmedqa:{i['id']}", {"format": "pubmedqa"})
             for i in pubmed]
    docs += [Document(f"medquad-{r['source']}-{r['id']}", r["answer"], r["url"] or r["source"], {"format": "medquad"})
             for r in medquad]
    index_dir = work / "index"
    if not (index_dir / "index.sqlite").is_file():
        with Index.open(index_dir, IndexSettings(chunk_tokens=CHUNK_TOKENS, chunk_overlap=CHUNK_OVERLAP)) as index:
            index.ingest_documents(docs, progress=True)
    indexed = time.perf_counter()

    curated, problems = read_pairs(work / "pairs.jsonl")
    eval_texts = [r["question"] for r in covid_eval + pubmed_eval] + [r["answer"] for r in covid_eval]
    eval_texts += [i["long_answer"] for i in pubmed if i["id"] in held_pubmed]
    with Index.open(index_dir) as index:
        built = build_raft_set(curated, index, load_hf_tokenizer(), eval_texts=eval_texts, malformed=problems,
                               settings=RaftSettings(k_distractors=2, seq_len=SEQ_LEN))
    built.save(work / "raft")
    report = built.report | {"index_minutes": round((indexed - started) / 60, 1),
                             "build_minutes": round((time.perf_counter() - indexed) / 60, 1),
                             "covidqa_heldout": len(covid_eval), "pubmedqa_heldout": len(pubmed_eval),
                             "tokens_per_example": round((built.report["prompt_tokens"] + built.report["target_tokens"])
                                                         / max(built.report["examples_out"], 1))}
    print(json.dumps(report, indent=2))
    return report


def base_model_dir() -> str:
    from assistant.generation.model_files import resolve_model_dir

    return resolve_model_dir("bundled:smollm2")


def run_tune(out: Path, data: Path, max_steps: int, **extra: Any) -> dict[str, Any]:
    """``python -m assistant.tuning.trainer`` in its own process (its peak memory is its own)."""
    args = [sys.executable, "-m", "assistant.tuning.trainer", "--model", base_model_dir(), "--data", str(data),
            "--out", str(out), "--max-steps", str(max_steps), "--batch-size", str(BATCH), "--grad-accum", str(ACCUM)]
    for key, value in extra.items():
        flag = key.replace("_", "-")
        args += [f"--{flag}" if value else f"--no-{flag}"] if isinstance(value, bool) else [f"--{flag}", str(value)]
    done = subprocess.run(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout[done.stdout.index("{"):])


def epoch_steps(packed: Path, eval_fraction: float) -> int:
    import numpy as np

    with np.load(packed) as npz:
        n = npz["input_ids"].shape[0]
    return math.ceil((n - math.ceil(n * eval_fraction)) / (BATCH * ACCUM))


def stage_train(work: Path) -> dict[str, Any]:
    packed = work / "raft" / "packed.npz"
    steps = epoch_steps(packed, 0.03)
    summary = run_tune(work / "tune", packed, steps, lr=3e-4, warmup_steps=10, eval_every=60, save_every=20,
                       eval_fraction=0.03, quantize="4bit", gradient_checkpointing=False)
    summary["max_steps"] = steps
    summary["minutes"] = round(summary["seconds"] / 60, 1)
    summary["tokens_per_s"] = round(summary["tokens"] / max(summary["seconds"], 1e-9))
    print(json.dumps(summary, indent=2))
    return summary


def stage_memory(work: Path) -> dict[str, Any]:
    packed = work / "raft" / "packed.npz"
    rows = {}
    for label, quantize in (("4-bit NF4 base", "4bit"), ("16-bit base", "none")):
        out = work / f"memory-{quantize}"
        summary = run_tune(out, packed, 6, warmup_steps=1, eval_every=0, save_every=0, eval_fraction=0.0,
                           quantize=quantize, gradient_checkpointing=False)
        rows[label] = {k: summary[k] for k in ("weights_mb", "peak_memory_mb", "tokens", "seconds", "bf16")}
        rows[label]["tokens_per_s"] = round(summary["tokens"] / summary["seconds"])
    print(json.dumps(rows, indent=2))
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO_ROOT / ".cache" / "tune-bench")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--quick", action="store_true", help="only the data and memory stages (a few minutes)")
    args = parser.parse_args(argv)
    stages = ["data", "memory"] if args.quick else [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; choose from {STAGES}")
    results_path = args.work / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    runners = {"data": stage_data, "train": stage_train, "memory": stage_memory}
    if "quality" in stages:
        from tune_quality import stage_quality  # noqa: PLC0415

        runners["quality"] = stage_quality
    for stage in stages:
        results[stage] = runners[stage](args.work)
        args.work.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    results["env"] = env_info()
    write_results("tune_bench", results, render(results))
    print(render(results))
    return 0


def render(results: dict[str, Any]) -> str:
    parts = [env_markdown(results["env"])] if "env" in results else []
    if "data" in results:
        d = results["data"]
        parts.append(md_table(["pairs in", "exact dup", "near dup", "contaminated", "examples", "with oracle",
                               "tokens/example", "sequences", "packing"],
                              [[d["pairs_in"], d["exact_duplicates"], d["near_duplicates"], d["contaminated"],
                                d["examples_out"], d["with_oracle"], d["tokens_per_example"], d["sequences"],
                                f"{d['packing_efficiency']:.1%}"]]))
    if "train" in results:
        t = results["train"]
        parts.append(md_table(["steps", "minutes", "tokens", "tokens/s", "peak memory (MB)", "best eval loss"],
                              [[t["step"], t["minutes"], t["tokens"], t["tokens_per_s"], t["peak_memory_mb"],
                                t["best_eval_loss"]]]))
    if "memory" in results:
        parts.append(md_table(["base", "weights (MB)", "peak RSS (MB)", "tokens/s"],
                              [[k, v["weights_mb"], v["peak_memory_mb"], v["tokens_per_s"]]
                               for k, v in results["memory"].items()]))
    if "quality" in results:
        from tune_quality import render_quality  # noqa: PLC0415

        parts.append(render_quality(results["quality"]))
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
