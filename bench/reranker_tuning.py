"""A trained reranker (issue 16, item 3): the bundled embedder, the tuned embedder, and the tuned
embedder followed by a cross-encoder trained by ``indexer.reranker_tuning.tune_reranker``, side
by side on the built-in sets' held-out questions; and what reranking adds to a search's time.

Run::

    .venv/bin/python bench/reranker_tuning.py --quick    # 300 pairs, 50 questions a set, small corpora
    .venv/bin/python bench/reranker_tuning.py            # every held-out question, whole corpora
    .venv/bin/python bench/reranker_tuning.py --embedder DIR/v1 --keep DIR   # reuse a tuned embedder

(2 CPU cores.) Writes ``bench/out/reranker_tuning.{json,md}`` (``reranker_tuning-quick.*`` with ``--quick``).
The pairs, held-out questions, corpora, metrics and bootstrap are ``bench/embedder_tuning.py``'s:

1. **Pairs**: the same seeded calibration-side sample (COVID-QA, PubMedQA, MedQuAD; none from
   TAT-QA, the untouched control), gold documents shared with held-out questions dropped.
2. **Embedder**: ``tune_embedder`` with its defaults, or ``--embedder FOLDER``: a version it saved
   from the very same pairs file (its manifest's hash is checked, else the run stops).
3. **Reranker**: ``tune_reranker`` with its defaults (``--layers``, ``--save-dtype`` change them)
   from MiniLM's weights, its negatives mined with the tuned embedder (the first stage it follows),
   the held-out questions of all four sets as its eval set (overlapping pairs dropped); or
   ``--reranker FOLDER``, one saved that way (pairs, eval set and miner checked).
4. **Retrieval**, hybrid (the service's mode): a fresh index per set and embedder; for the
   reranked column, the top ``--depth`` (20) of the tuned index's 30 hits are reordered by the
   trained model (``indexer.rerank.Reranker``, the class the index's hook uses), the rest kept
   below, and gold@3 passages read from its top 3 (the service's own k=3 search reranks the same
   top 20 of a fused list scaled over a shorter depth: it can differ in a rare tie).
5. **Latency**, on ``--latency-queries`` held-out questions spread over the sets: the service's
   search (hybrid, k=3) on the tuned index with the hook off and on (``IndexSettings.reranker``,
   ``rerank_depth`` 5/10/20/30), on and off interleaved per query; the p50/p95 of the per-query
   difference. For the trained model as saved, a copy of it in the other dtype (float32 or
   bfloat16), and, for their time alone, MiniLM cut to 3 and 2 layers in bfloat16 (untrained:
   what a shallower reranker would cost).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import env_info, env_markdown, md_table, parse_args, write_results  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from embedder_tuning import (  # noqa: E402
    CONTROL_SET, SETS, TARGET_PAIRS, TUNED_SETS, eval_corpus, evaluate, leakage_report, load_sets, means,
    paired_bootstrap, query_metrics, training_pairs, write_inputs,
)

from indexer.embedder_tuning import TuningSettings, tune_embedder  # noqa: E402
from indexer.index import Index  # noqa: E402
from indexer.rerank import Reranker  # noqa: E402
from indexer.reranker_tuning import DEFAULT_BASE, RerankerTuningSettings, load_base, tune_reranker  # noqa: E402
from indexer.settings import IndexSettings  # noqa: E402
from indexer.tuning_run import MANIFEST, local_model_folder, sha256_of  # noqa: E402

LABELS = ("base", "tuned", "reranked")
LATENCY_DEPTHS = (5, 10, 20, 30)
TARGET_ADDED_MS, TARGET_DEPTH = 60.0, 20
MAX_NDCG_LOSS = 0.01


def reuse(folder: str, pairs_path: Path, eval_path: Path) -> tuple[Path, dict[str, Any]]:
    """A model saved by an earlier tuning run, and its manifest, once that says it was trained on
    this very pairs file and decontaminated against these held-out questions; else the run stops."""
    manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    if manifest["pairs_sha256"] != sha256_of(pairs_path) or \
            [e["sha256"] for e in manifest["eval_sets"]] != [sha256_of(eval_path)]:
        raise SystemExit(f"{folder} was tuned on other pairs or eval sets than this run's: drop the option to "
                         "train afresh")
    return Path(folder), manifest


def tuned_embedder(args: Any, pairs_path: Path, eval_path: Path, out: Path) -> tuple[Path, dict[str, Any]]:
    """``--embedder``'s folder, or a fresh ``tune_embedder`` run with its defaults."""
    if args.embedder:
        return reuse(args.embedder, pairs_path, eval_path)
    with contextlib.redirect_stdout(sys.stderr):  # the trainer prints its log lines; keep stdout the tables
        return tune_embedder(pairs_path, out, TuningSettings(), base=IndexSettings.from_env().embedding_model,
                             eval_sets=[eval_path], progress=False)


def trained_reranker(args: Any, pairs_path: Path, eval_path: Path, embedder: Path,
                     out: Path) -> tuple[Path, dict[str, Any]]:
    """``--reranker``'s folder (its negatives mined with this run's embedder), or a fresh
    ``tune_reranker`` run from MiniLM's weights, its negatives mined with the tuned embedder."""
    if args.reranker:
        folder, manifest = reuse(args.reranker, pairs_path, eval_path)
        if Path(manifest["miner_folder"]).resolve() != embedder.resolve():
            raise SystemExit(f"{folder}'s negatives were mined with {manifest['miner_folder']}, not {embedder}")
        return folder, manifest
    settings = RerankerTuningSettings(layers=args.layers, save_dtype=args.save_dtype)
    with contextlib.redirect_stdout(sys.stderr):
        return tune_reranker(pairs_path, out, settings, base=DEFAULT_BASE, miner=str(embedder),
                             eval_sets=[eval_path], progress=False)


def reranked(hits: list[Any], reranker: Reranker, query: str, depth: int) -> list[Any]:
    """The hits with their top ``depth`` reordered by the reranker, as the index's hook orders them."""
    top = hits[:depth]
    scores = reranker.scores(query, [h.text for h in top])
    order = sorted(range(len(top)), key=lambda i: -float(scores[i]))
    return [top[i] for i in order] + hits[depth:]


def latency(index_dir: Path, embedder: Path, model: str, queries: list[str]) -> dict[int, dict[str, float]]:
    """Per depth, the p50/p95 of the time the hook adds to the service's search (on − off, per query)."""
    base = dataclasses.replace(IndexSettings.from_env(), embedding_model=str(embedder), near_duplicates="keep",
                               chunk_titles=False, reranker=None)
    out = {}
    with Index.open(index_dir, base) as off:
        for q in queries[:3]:
            off.search(q, k=3)  # warm: the embedder's first batches are slow
        for depth in LATENCY_DEPTHS:
            with Index.open(index_dir, dataclasses.replace(base, reranker=model, rerank_depth=depth)) as on:
                on.search(queries[0], k=3)  # loads the cross-encoder
                pairs = []
                for q in queries:
                    t0 = time.perf_counter()
                    off.search(q, k=3)
                    t1 = time.perf_counter()
                    on.search(q, k=3)
                    pairs.append((t1 - t0, time.perf_counter() - t1))
            times = np.asarray(pairs) * 1000
            added = times[:, 1] - times[:, 0]
            out[depth] = {"off_p50_ms": float(np.median(times[:, 0])), "on_p50_ms": float(np.median(times[:, 1])),
                          "added_p50_ms": float(np.median(added)), "added_p95_ms": float(np.percentile(added, 95))}
    return out


def latency_variants(trained: Path, tmp: Path) -> dict[str, Path]:
    """The models whose time is measured: the trained one, a copy in the other dtype, shallow MiniLMs."""
    import torch

    saved = json.loads((trained / "config.json").read_text(encoding="utf-8")).get("dtype", "float32")
    other = "float32" if saved == "bfloat16" else "bfloat16"
    variants = {f"trained, as saved ({saved})": trained}
    copies = {f"trained, {other} copy": (trained, 0, other)}
    copies |= {f"MiniLM first {n} layers, bfloat16 (untrained)": (local_model_folder(DEFAULT_BASE, "--base"), n,
                                                                  "bfloat16") for n in (3, 2)}
    for label, (source, layers, dtype) in copies.items():
        model = load_base(source, RerankerTuningSettings(layers=layers))
        model.to(getattr(torch, dtype))
        folder = tmp / f"latency-{len(variants)}"
        model.save(str(folder))
        variants[label] = folder
    return variants


def main() -> None:
    args = parse_args(__doc__, extra={
        "--pairs": {"type": int, "default": None, "help": "training pairs at most (default 5000; 300 with --quick)"},
        "--limit": {"type": int, "default": None, "help": "held-out questions per set (default all; 50 with --quick)"},
        "--corpus": {"type": int, "default": None,
                     "help": "corpus documents per set (default whole; 300 with --quick)"},
        "--embedder": {"default": None, "help": "a tuned embedder folder saved from the same pairs (skips tuning)"},
        "--reranker": {"default": None, "help": "a reranker folder saved from the same pairs (skips training)"},
        "--keep": {"default": None, "help": "folder to keep the tuned models in (default: a temporary one)"},
        "--depth": {"type": int, "default": TARGET_DEPTH, "help": "hits the reranker reorders (default 20)"},
        "--layers": {"type": int, "default": 0, "help": "the reranker's layers (default 0: all of MiniLM's 6)"},
        "--save-dtype": {"default": "float32", "help": "the reranker's saved dtype: float32 or bfloat16"},
        "--latency-queries": {"type": int, "default": None, "help": "questions timed (default 100; 20 with --quick)"},
    })
    n_pairs = args.pairs or (300 if args.quick else TARGET_PAIRS)
    limit = args.limit or (50 if args.quick else None)
    corpus_size = args.corpus or (300 if args.quick else None)
    n_latency = args.latency_queries or (20 if args.quick else 100)
    started = time.perf_counter()
    sets = load_sets(limit)
    pairs, pair_info = training_pairs(sets, n_pairs)
    results: dict[str, Any] = {"pairs": pair_info, "depth": args.depth, "sets": {}}

    with tempfile.TemporaryDirectory(prefix="reranker-tuning-") as tmp_name:
        tmp = Path(tmp_name)
        keep = Path(args.keep) if args.keep else tmp
        keep.mkdir(parents=True, exist_ok=True)
        pairs_path, eval_path = write_inputs(keep, pairs, sets)
        t0 = time.perf_counter()
        embedder, emb_manifest = tuned_embedder(args, pairs_path, eval_path, keep / "embedder")
        results["embedder"] = {"folder": str(embedder), "wall_s": round(time.perf_counter() - t0, 1),
                               "reused": bool(args.embedder), "seconds": emb_manifest["seconds"],
                               "validation": [emb_manifest["validation_before"], emb_manifest["validation_after"]]}
        print(f"tuned embedder {embedder} (validation nDCG@10 {emb_manifest['validation_before']:.3f} → "
              f"{emb_manifest['validation_after']:.3f})", flush=True)
        t0 = time.perf_counter()
        reranker_dir, manifest = trained_reranker(args, pairs_path, eval_path, embedder, keep / "reranker")
        results["reranker"] = {"folder": str(reranker_dir), "wall_s": round(time.perf_counter() - t0, 1),
                               "reused": bool(args.reranker),
                               "manifest": {k: manifest[k] for k in (
                                   "counts", "settings", "layers", "validation_before", "validation_after", "steps",
                                   "best_checkpoint", "seconds", "versions")}}
        print(f"reranker {reranker_dir}, trained in {manifest['seconds']:.0f} s: "
              f"{manifest['counts']['rows']} rows, validation nDCG@10 {manifest['validation_before']:.3f} → "
              f"{manifest['validation_after']:.3f}, {manifest['steps']} steps", flush=True)
        results["leakage"] = leakage_report(sets, pairs, RerankerTuningSettings(**manifest["settings"]))

        reranker = Reranker(str(reranker_dir))
        scores: dict[str, Any] = {}
        for name in SETS:
            beir = eval_corpus(sets[name]["beir"], sets[name]["evaluated"], corpus_size)
            runs = {label: evaluate(beir, model, tmp / f"index-{name}-{label}", ("hybrid",), keep_hits=True)
                    for label, model in (("base", IndexSettings.from_env().embedding_model), ("tuned", str(embedder)))}
            t0 = time.perf_counter()
            per_query = {label: runs[label]["per_query"]["hybrid"] for label in ("base", "tuned")}
            per_query["reranked"] = {}
            for qid, text in beir.queries.items():
                hits = reranked(runs["tuned"]["hits"]["hybrid"][qid], reranker, text, args.depth)
                per_query["reranked"][qid] = query_metrics(hits, hits, beir.qrels[qid])
            rerank_s = time.perf_counter() - t0
            qids = list(beir.queries)
            ndcg = {label: [per_query[label][q]["ndcg@10"] for q in qids] for label in LABELS}
            scores[name] = {label: means(per_query[label]) for label in LABELS}
            scores[name]["reranked_vs_tuned"] = paired_bootstrap(ndcg["tuned"], ndcg["reranked"])
            scores[name]["reranked_vs_base"] = paired_bootstrap(ndcg["base"], ndcg["reranked"])
            scores[name]["tuned_vs_base"] = paired_bootstrap(ndcg["base"], ndcg["tuned"])
            results["sets"][name] = {"queries": len(qids), "corpus": len(beir.corpus),
                                     "corpus_whole": len(sets[name]["beir"].corpus), "rerank_s": round(rerank_s, 1),
                                     **{label: {k: v for k, v in runs[label].items() if k not in ("per_query", "hits")}
                                        for label in ("base", "tuned")},
                                     "scores": scores[name], "ndcg@10_per_query": ndcg}
            print(f"{name:<9} {len(qids)} queries, {len(beir.corpus)} docs: nDCG@10 base "
                  f"{scores[name]['base']['ndcg@10']:.3f}, tuned {scores[name]['tuned']['ndcg@10']:.3f}, "
                  f"reranked {scores[name]['reranked']['ndcg@10']:.3f} (reranking {rerank_s:.0f} s)", flush=True)

        # one question of each set in turn: their lengths differ
        timed = [item.question for turn in zip(*(sets[n]["evaluated"] for n in SETS)) for item in turn][:n_latency]
        results["latency"] = {}
        for label, model in latency_variants(reranker_dir, tmp).items():
            index_dir = tmp / f"index-{SETS[0]}-tuned"
            results["latency"][label] = latency(index_dir, embedder, str(model), timed)
            print(f"latency of {label}: " + ", ".join(f"depth {d} +{v['added_p50_ms']:.0f} ms"
                                                      for d, v in results["latency"][label].items()), flush=True)
    results["latency_queries"] = len(timed)
    results["total_s"] = round(time.perf_counter() - started, 1)
    write_report(results, args.quick)


def write_report(results: dict[str, Any], quick: bool) -> None:
    s = results["sets"]
    rows = []
    for name in SETS:
        for label in LABELS:
            m = s[name]["scores"][label]
            delta = {"tuned": "tuned_vs_base", "reranked": "reranked_vs_tuned"}.get(label)
            d = s[name]["scores"][delta] if delta else None
            rows.append([name, label if label != "reranked" else f"tuned + reranker (top {results['depth']})",
                         f"{m['recall@3']:.3f}", f"{m['gold@3passages']:.3f}", f"{m['recall@10']:.3f}",
                         f"{m['ndcg@10']:.3f}", f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]" if d else ""])
    table = md_table(["set", "retrieval (hybrid)", "R@3", "gold@3 passages", "R@10", "nDCG@10",
                      "Δ nDCG@10 vs the row above [95% CI]"], rows)
    lat_rows = [[label, str(depth), f"{v['off_p50_ms']:.0f}", f"{v['on_p50_ms']:.0f}", f"{v['added_p50_ms']:+.0f}",
                 f"{v['added_p95_ms']:+.0f}"]
                for label, by_depth in results["latency"].items() for depth, v in by_depth.items()]
    lat_table = md_table(["reranker", "depth", "search p50 ms, off", "on", "added p50 ms", "added p95 ms"], lat_rows)
    checks = []
    for name in SETS:
        d = s[name]["scores"]["reranked_vs_tuned"]
        if name == CONTROL_SET:
            checks.append([f"nDCG@10 no worse than −{MAX_NDCG_LOSS:.2f} (control: no training data)", name,
                           f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]", "PASS" if d[0] >= -MAX_NDCG_LOSS else "FAIL"])
        else:
            checks.append(["nDCG@10 higher with the reranker than the tuned embedder alone", name,
                           f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]", "PASS" if d[0] > 0 else "FAIL"])
    for label, by_depth in results["latency"].items():
        if "untrained" not in label:
            added = by_depth[TARGET_DEPTH]["added_p50_ms"]
            checks.append([f"reranking the top {TARGET_DEPTH} adds ≤ {TARGET_ADDED_MS:.0f} ms p50", label,
                           f"{added:+.0f} ms", "PASS" if added <= TARGET_ADDED_MS else "FAIL"])
    if quick:
        for c in checks:
            c[-1] += " (quick: not evidence)"
    results["checks"] = checks
    check_table = md_table(["target", "set / model", "measured", "result"], checks)
    r, e = results["reranker"]["manifest"], results["embedder"]
    leak = "; ".join(f"{n}: {v['evaluated_questions_verbatim_in_pairs']} questions verbatim, "
                     f"{v['evaluated_gold_docs_in_pairs_by_id']} gold docs by id, "
                     f"{v['evaluated_gold_docs_in_pairs_by_text']} by text"
                     for n, v in results["leakage"].items() if n in SETS)
    sizes = ", ".join(f"{n} {s[n]['queries']} questions / {s[n]['corpus']:,} docs"
                      + ("" if s[n]["corpus"] == s[n]["corpus_whole"] else f" (of {s[n]['corpus_whole']:,})")
                      for n in SETS)
    markdown = "\n\n".join([
        "## A trained reranker (issue 16): base embedder, tuned embedder, tuned embedder + reranker"
        + (" (--quick)" if quick else ""),
        f"Reranker: `tune_reranker` from MiniLM's weights ({r['layers']} layers, max {r['settings']['max_seq_length']} "
        f"tokens, {r['settings']['epochs']} epoch, batch {r['settings']['batch_size']}, "
        f"lr {r['settings']['learning_rate']},"
        f" {r['settings']['negatives_per_pair']} negatives a pair mined with the tuned embedder, saved as "
        f"{r['settings']['save_dtype']}) on {r['counts']['training']:,} training pairs ({r['counts']['rows']:,} rows; "
        f"{r['counts']['contaminated']} pairs dropped as overlapping held-out questions), validation reranking "
        f"nDCG@10 {r['validation_before']:.3f} → {r['validation_after']:.3f}, {r['steps']} steps, "
        f"{r['seconds']:.0f} s. Embedder: `tune_embedder` defaults on the same pairs file"
        + (" (reused from an earlier run of it)" if e["reused"] else "") + f", {e['seconds']:.0f} s. "
        f"Held-out questions: {sizes}. Fresh hybrid indexes (200-token chunks, near duplicates kept), 30 chunks "
        f"searched; the reranker reorders the tuned index's top {results['depth']}. "
        "Δ: paired bootstrap over questions.",
        table, "### What reranking adds to a search",
        f"The service's search (hybrid, k=3) on the tuned COVID-QA index, hook off and on, interleaved, "
        f"{results['latency_queries']} held-out questions spread over the four sets; 'added' is the per-query "
        "difference. The untrained rows are for their time only.",
        lat_table, "### Checks", check_table,
        f"Overlap of the evaluated questions with the pairs trained on (after the held-out check): {leak}.",
        f"Whole run {results['total_s']:.0f} s. " + env_markdown(env_info()),
    ])
    print(table, lat_table, check_table, sep="\n\n")
    print(f"written to {write_results('reranker_tuning', results, markdown)}")


if __name__ == "__main__":
    main()
