"""The ``quality`` stage of ``bench/tune_bench.py``: held-out questions answered by
the base model with retrieval, the adapter with retrieval and the adapter alone,
scored with the gate's own code (:mod:`assistant.tuning.gate`), plus the gate's drift."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from common import md_table

SETS = {"covidqa": "covidqa_heldout.jsonl", "pubmedqa": "pubmedqa_heldout.jsonl"}
METRIC = {"covidqa": "token F1", "pubmedqa": "accuracy"}
SYSTEMS = ("base + RAG", "adapter + RAG", "adapter alone")


def register_bench_adapter(work: Path) -> tuple[Any, str, str]:
    """The trained adapter (lowest eval loss) in a registry under ``work``."""
    from assistant.generation.model_files import resolve_model_dir
    from assistant.generation.registry import AdapterRegistry, file_hash, model_hash

    registry = AdapterRegistry(work / "registry")
    model_dir = resolve_model_dir("bundled:smollm2")
    base_hash = model_hash(model_dir)
    if "raft" not in registry.names():
        tuned = work / "tune" / ("best" if (work / "tune" / "best").is_dir() else "adapter")
        registry.register(tuned, base_model="bundled:smollm2", base_model_hash=base_hash, name="raft",
                          data_hash=file_hash(work / "raft" / "packed.npz"))
    return registry, "raft", base_hash


def answer_stats(answers: list[str]) -> dict[str, float]:
    """Shares of answers that cite a passage and that abstain."""
    from assistant.grounding.claims import is_refusal, parse_citations

    n = max(len(answers), 1)
    return {"cited": round(sum(bool(parse_citations(a)) for a in answers) / n, 3),
            "abstained": round(sum(is_refusal(a) for a in answers) / n, 3)}


def stage_quality(work: Path) -> dict[str, Any]:
    from assistant.evaluation.sets import read_eval_set
    from assistant.evaluation.answers import answer_all, retrieval_prompts
    from assistant.evaluation.drift import general_drift
    from assistant.tuning.gate import GateSettings, domain_score
    from assistant.generation.base import GenerationSettings
    from assistant.generation.local import LocalGenerator
    from indexer.index import Index

    registry, name, base_hash = register_bench_adapter(work)
    generator = LocalGenerator(GenerationSettings(model="bundled:smollm2", device="cpu", adapters_dir=registry.root))
    settings = GateSettings()
    results: dict[str, Any] = {"settings": settings.__dict__, "sets": {}}
    with Index.open(work / "index") as index:
        for set_name, file in SETS.items():
            items = read_eval_set(work / file)
            rag_prompts = retrieval_prompts(generator, items, index, settings.top_k)
            closed_prompts = retrieval_prompts(generator, items, None, settings.top_k)
            runs = {"base + RAG": (rag_prompts, None), "adapter + RAG": (rag_prompts, name),
                    "adapter alone": (closed_prompts, name)}
            rows: dict[str, Any] = {}
            for system, (prompts, adapter) in runs.items():
                started = time.perf_counter()
                answers = answer_all(generator, prompts, adapter, max_new_tokens=settings.max_new_tokens,
                                     batch_size=settings.batch_size, progress=True)
                rows[system] = domain_score(items, answers) | answer_stats(answers) | {
                    "minutes": round((time.perf_counter() - started) / 60, 1), "examples": answers[:3]}
            results["sets"][set_name] = rows
            print(json.dumps({k: {m: v for m, v in r.items() if m != "examples"} for k, r in rows.items()}, indent=2))
    results["drift"] = general_drift(generator, name, cache=work / "probe-base-answers.json",
                                     max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size)
    results["drift_bound"] = settings.max_drift
    print(json.dumps(results["drift"], indent=2))
    return results


def render_quality(quality: dict[str, Any]) -> str:
    rows = []
    for set_name, systems in quality["sets"].items():
        base = systems["base + RAG"]["score"]
        for system in SYSTEMS:
            r = systems[system]
            rows.append([set_name, METRIC[set_name], system, r["n"], f"{r['score']:.1f}",
                         f"{r['score'] - base:+.1f}" if system != "base + RAG" else "", f"{r['cited']:.0%}",
                         f"{r['abstained']:.0%}"])
    d = quality["drift"]
    drift = md_table(["probe", "base perplexity", "adapter perplexity", "rise"],
                     [["base model's answers to general prompts", f"{d['answers_ppl_base']:.2f}",
                       f"{d['answers_ppl_adapter']:.2f}", f"{d['answers_ppl_adapter'] / d['answers_ppl_base'] - 1:+.1%}"],
                      ["general English text", f"{d['text_ppl_base']:.2f}", f"{d['text_ppl_adapter']:.2f}",
                       f"{d['text_ppl_adapter'] / d['text_ppl_base'] - 1:+.1%}"]])
    return (md_table(["set", "metric", "system", "n", "score", "vs base + RAG", "cites [n]", "abstains"], rows)
            + f"\n\nGeneral drift {d['drift']:+.1%} (gate bound {quality['drift_bound']:.0%}):\n\n" + drift)
