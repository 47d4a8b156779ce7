"""``indexer eval``: retrieval quality of an index's search modes on a BEIR set.

    indexer eval --set covidqa --modes bm25 hybrid --limit 300
    indexer eval --corpus corpus.jsonl --queries queries.jsonl --qrels qrels/test.tsv --index DIR --json

Without ``--index`` the corpus is ingested into a fresh temporary index
(near duplicates kept), removed afterwards. Register with :func:`add_eval_parser`; also runs alone as
``python -m indexer.evaluation.cli eval ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from indexer.evaluation.beir import BeirSet, read_beir, take_queries
from indexer.evaluation.builders import BUILDERS, build
from indexer.evaluation.runner import MODES, run_retrieval_eval

COLUMNS = {"ndcg@10": "nDCG@10", "recall@1": "R@1", "recall@5": "R@5",
           "recall@10": "R@10", "recall@100": "R@100", "mrr@10": "MRR@10"}


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return n


def load_set(args: argparse.Namespace) -> tuple[str, BeirSet]:
    files = (args.corpus, args.queries, args.qrels)
    if args.set:
        if any(files):
            raise ValueError("give either --set or --corpus/--queries/--qrels, not both")
        return args.set, build(args.set, args.limit)
    if not all(files):
        raise ValueError("give --set NAME, or all three of --corpus, --queries and --qrels")
    return str(args.corpus), take_queries(read_beir(*files, strict_qrels=args.strict_qrels), args.limit)


def format_table(results: dict[str, dict[str, float]]) -> str:
    width = max(len("mode"), *map(len, results))
    lines = [f"{'mode':<{width}}  " + "  ".join(f"{c:>7}" for c in COLUMNS.values())]
    for mode, metrics in results.items():
        lines.append(f"{mode:<{width}}  " + "  ".join(f"{metrics[key]:>7.4f}" for key in COLUMNS))
    return "\n".join(lines)


def open_index(directory: Path | None, stack: contextlib.ExitStack) -> Any:
    """The index at ``directory``, or a fresh one in a temporary folder that
    keeps near duplicates: a set's relevant document must not be dropped as a
    near copy of another (MedQuAD has many), or its queries can't be answered."""
    from indexer.index import Index

    if directory is not None:
        return Index.open(directory)
    from indexer.settings import IndexSettings

    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="indexer-eval-"))
    return Index.open(Path(folder) / "index", dataclasses.replace(IndexSettings.from_env(), near_duplicates="keep"))


def cmd_eval(args: argparse.Namespace) -> int:
    name, beir = load_set(args)
    queries = len(beir.judged_queries())
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        index = stack.enter_context(contextlib.closing(open_index(args.index, stack)))
        results = run_retrieval_eval(beir, index, modes=args.modes, k=args.k, progress=not args.quiet and not args.json)
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({"set": name, "queries": queries, "corpus": len(beir.corpus), "k": args.k,
                          "seconds": round(seconds, 3), "results": results}, indent=2))
        return 0
    print(f"eval {name}: {queries} queries, {len(beir.corpus)} corpus docs, top {args.k} chunks, {seconds:.1f} s")
    print(format_table(results))
    return 0


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    e = subparsers.add_parser("eval", help="measure retrieval (nDCG, recall, MRR) of the search modes on a BEIR set",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--set", choices=sorted(BUILDERS), help="build the set from the shared data")
    e.add_argument("--corpus", type=Path, help="BEIR corpus.jsonl")
    e.add_argument("--queries", type=Path, help="BEIR queries.jsonl")
    e.add_argument("--qrels", type=Path, help="BEIR qrels TSV (query-id, corpus-id, score)")
    e.add_argument("--strict-qrels", action="store_true",
                   help="refuse a qrels file that judges a query-document pair twice "
                        "(default: keep the highest grade and warn with the count)")
    e.add_argument("--index", type=Path, help="index folder to ingest into (default: a fresh temporary index)")
    e.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="search modes (default: all)")
    e.add_argument("--k", type=_positive, default=100, help="chunks retrieved per query (default 100)")
    e.add_argument("--limit", type=_positive, help="evaluate the first N queries (MedQuAD: its first N records)")
    e.add_argument("--json", action="store_true", help="print the results as JSON")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_eval)
    return e


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m indexer.evaluation.cli")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, OSError) as exc:
        print(f"indexer eval: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
