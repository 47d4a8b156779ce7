"""The README's headline table: the bundled SmolLM2-135M-Instruct and MiniLM, base and the
RAFT adapter of ``bench/tune_bench.py``, closed-book and with retrieval, on the held-out
split of the four built-in sets.

Run::

    .venv/bin/python bench/eval_headline.py            # or: make eval

Trains the adapter first when ``.cache/tune-bench`` has none (the ``data`` and ``train``
stages of ``bench/tune_bench.py``: about 50 minutes on 2 cores), registers it as ``raft``,
then runs, and times, the one command the README quotes::

    .venv/bin/assistant eval --sets pubmedqa,covidqa,tatqa,medquad \\
        --adapters-dir .cache/tune-bench/registry --adapter raft --out .cache/eval

The report (``report.md``, ``report.json``, ``report.png``, ``answers.jsonl``) is in
``--out``; the wall time, split into building the set indexes (once) and the evaluation,
goes to ``bench/out/eval_headline.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, env_info, env_markdown, md_table, write_results  # noqa: E402

SETS = "pubmedqa,covidqa,tatqa,medquad"


def ensure_adapter(work: Path) -> None:
    import tune_bench  # noqa: PLC0415
    from tune_quality import register_bench_adapter  # noqa: PLC0415

    tune = work / "tune"
    if not any((tune / d / "adapter_config.json").is_file() for d in ("best", "adapter")):
        print("no trained adapter under", work, "- training one (bench/tune_bench.py --stages data,train)", flush=True)
        tune_bench.main(["--work", str(work), "--stages", "data,train"])
    register_bench_adapter(work)


METRICS = {"pubmedqa": "accuracy", "covidqa": "token F1", "tatqa": "number match / token F1", "medquad": "token F1"}


def headline(report: dict) -> str:
    """The README's table: per set, the four systems side by side."""
    systems = report["systems"]

    def pct(value: float | None, ci: float | None = None) -> str:
        if value is None:
            return "–"
        return f"{100 * value:.1f}" + (f" ± {100 * ci:.0f}" if ci else "")

    rows = []
    for name, result in report["sets"].items():
        n = result[systems[0]]["n"]
        label = f"{name} ({METRICS.get(name, 'accuracy')}, n = {n})"
        rows.append([label, "accuracy shown"] + [pct(result[s]["accuracy"], result[s].get("accuracy_ci95"))
                                                  for s in systems])
        rows.append(["", "raw accuracy (before the check)"] + [pct(result[s]["raw_accuracy"]) for s in systems])
        rows.append(["", "citation precision"] + [pct(result[s].get("citation_precision")) for s in systems])
        rows.append(["", "hallucination rate (unanswerable)"] + [pct(result[s].get("hallucination_rate"))
                                                                 for s in systems])
        rows.append(["", "abstains"] + [pct(result[s]["abstention_rate"]) for s in systems])
    drift = report.get("drift")
    table = md_table(["set", "measure", *systems], rows)
    if drift:
        table += (f"\n\nGeneral drift of the adapter: {drift['drift']:+.1%} (perplexity of the base model's answers "
                  f"to general prompts {drift['answers_ppl_base']:.2f} → {drift['answers_ppl_adapter']:.2f}, of "
                  f"general text {drift['text_ppl_base']:.1f} → {drift['text_ppl_adapter']:.1f}).")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO_ROOT / ".cache" / "tune-bench")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / ".cache" / "eval")
    parser.add_argument("--limit", type=int, help="items per set (default: assistant eval's)")
    args = parser.parse_args(argv)
    ensure_adapter(args.work)
    command = [str(Path(sys.executable).parent / "assistant"), "eval", "--sets", SETS,
               "--adapters-dir", str(args.work / "registry"), "--adapter", "raft", "--out", str(args.out)]
    if args.limit is not None:
        command += ["--limit", str(args.limit)]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    report = json.loads((args.out / "report.json").read_text(encoding="utf-8"))
    results = {"command": " ".join(["assistant", *command[1:]]), "wall_minutes": round(wall / 60, 1),
               "eval_minutes": round(report["seconds"] / 60, 1),
               "systems": {f"{name}/{system}": rows[system]["seconds"]
                           for name, rows in report["sets"].items() for system in report["systems"]},
               "env": env_info()}
    table = md_table(["set / system", "seconds"], [[k, v] for k, v in results["systems"].items()])
    text = (f"{env_markdown(results['env'])}\n\nwall {results['wall_minutes']} min, of which evaluation "
            f"{results['eval_minutes']} min (the rest: loading, and building the set indexes on a first run)\n\n"
            f"{table}\n\n{headline(report)}\n")
    write_results("eval_headline", results, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
