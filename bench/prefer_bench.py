"""The prefer stage on the example adapter: on-policy pairs, DPO, the gate, the registry.

    .venv/bin/python bench/prefer_bench.py [--work .cache/tune-bench] [--contexts 400]

Runs the real pipeline (``stages=prefer``) from the RAFT adapter ``raft`` that
``make eval`` trains (bench/eval_headline.py) in ``--work``: the adapter answers
``--contexts`` contexts of its own curated pairs (half without the oracle passage), the
grounding check labels them, each wrong answer becomes a DPO pair, and the tuned
adapter is gated against its parent on the COVID-QA held-out items and registered as
``v<n>`` with its lineage. Prints and writes (``bench/out/prefer.json``) the pair
counts, the training time and peak memory, and the gate's figures; evaluate the two
adapters side by side with ``assistant eval --adapter raft --adapter <new>``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from assistant.generation.model_files import DEFAULT_MODEL  # noqa: E402
from assistant.tuning.pipeline import run  # noqa: E402
from assistant.tuning.spec import RetuneSpec  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO_ROOT / ".cache" / "tune-bench")
    parser.add_argument("--parent", default="raft")
    parser.add_argument("--contexts", type=int, default=400, help="curated pairs turned into contexts")
    parser.add_argument("--eval-limit", type=int, default=30, help="held-out items of the gate")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--sft-weight", type=float, default=0.0, help="supervised term on the chosen answers")
    parser.add_argument("--no-reinforce", action="store_true", help="no pairs that keep supported answers")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out" / "prefer.json")
    args = parser.parse_args(argv)
    work = args.work
    if not (work / "registry" / args.parent / "adapter_config.json").is_file():
        print(f"no adapter {args.parent!r} in {work / 'registry'}: run `make eval` first (it trains it)", file=sys.stderr)
        return 2
    spec = RetuneSpec(
        pairs=str(work / "pairs.jsonl"), index_dir=str(work / "index"), registry_dir=str(work / "registry"),
        work_dir=str(work / f"prefer-{args.contexts}"), model=DEFAULT_MODEL, stages=("prefer",), parent=args.parent,
        eval_set=str(work / "covidqa_heldout.jsonl"), eval_limit=args.eval_limit, activate=False,
        synthetic={"max_contexts": args.contexts, "unanswerable_share": 0.5, "reinforce_supported": not args.no_reinforce},
        prefer={"method": "dpo", "lr": args.lr, "beta": args.beta, "epochs": args.epochs, "batch_size": 4,
                "sft_weight": args.sft_weight,
                "grad_accum": 2, "save_every": 20})
    started, cpu = time.perf_counter(), time.process_time()
    result = run(spec, activate_here=False)
    train = result.prefer.get("train", {})
    summary = {
        "command": " ".join(["bench/prefer_bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "adapter": result.adapter, "parent": args.parent, "accepted": result.accepted, "reason": result.reason,
        "data": {k: v for k, v in result.prefer.items() if k != "train"}, "train": train,
        "gate": {"domain": result.gate.get("domain"), "parent": result.gate.get("parent"),
                 "drift": (result.gate.get("drift") or {}).get("drift")},
        "wall_minutes": round((time.perf_counter() - started) / 60, 1),
        "cpu_minutes": round((time.process_time() - cpu) / 60, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
