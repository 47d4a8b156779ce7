"""``indexer eval``: retrieval quality of an index's search modes on a BEIR set.

    indexer eval --set covidqa --modes bm25 hybrid --limit 300
    indexer eval --corpus corpus.jsonl --queries queries.jsonl --qrels qrels/test.tsv --index DIR --json
    indexer eval --set covidqa --embedder bundled:all-MiniLM-L6-v2 --embedder models/embedder/v1 \\
        --reranker models/reranker/v1          # side by side: each embedder, then + the reranker

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


@dataclasses.dataclass(frozen=True)
class System:
    """One retrieval system compared: an embedder (None: the index's, or the configured one) and a reranker."""

    embedder: str | None = None
    reranker: str | None = None

    @property
    def label(self) -> str:
        return (self.embedder or "default embedder") + (f" + rerank {self.reranker}" if self.reranker else "")


def systems_of(args: argparse.Namespace) -> list[System]:
    """Each ``--embedder`` (or the default one) alone, then with each ``--reranker``: side by side."""
    if args.index is not None and args.embedder:
        raise ValueError("--embedder compares fresh indexes; an --index keeps the embedder it was built with "
                         "(re-embed it with `indexer reembed` to change it)")
    return [System(e, r) for e in (args.embedder or [None]) for r in [None, *(args.reranker or [])]]


def open_index(directory: Path | None, stack: contextlib.ExitStack, system: System = System()) -> tuple[Any, Path]:
    """The index at ``directory`` and its folder, or a fresh one in a temporary folder that
    keeps near duplicates (a set's relevant document must not be dropped as a near copy of
    another, MedQuAD has many), embedded by ``system.embedder``; reranking with ``system.reranker``."""
    from indexer.index import Index
    from indexer.evaluation.reranked import open_with_reranker
    from indexer.settings import IndexSettings

    if directory is None:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="indexer-eval-")))
        settings = dataclasses.replace(IndexSettings.from_env(), near_duplicates="keep", reranker=system.reranker)
        if system.embedder:
            settings = dataclasses.replace(settings, embedding_model=system.embedder)
        return Index.open(folder / "index", settings), folder / "index"
    return open_with_reranker(directory, system.reranker), directory


def cmd_eval(args: argparse.Namespace) -> int:
    name, beir = load_set(args)
    queries = len(beir.judged_queries())
    started = time.perf_counter()
    compared: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        folders: dict[str | None, Path] = {}  # a fresh folder per embedder; its rerankers reuse it
        for system in systems_of(args):
            index, folder = open_index(args.index or folders.get(system.embedder), stack, system)
            folders.setdefault(system.embedder, folder)
            # one index open at a time: each holds the writer lock from its ingest until closed
            with contextlib.closing(index):
                results = run_retrieval_eval(beir, index, modes=args.modes, k=args.k,
                                             progress=not args.quiet and not args.json)
            compared.append({"system": system.label, "embedder": system.embedder, "reranker": system.reranker,
                             "results": results})
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({"set": name, "queries": queries, "corpus": len(beir.corpus), "k": args.k,
                          "seconds": round(seconds, 3), "results": compared[0]["results"], "systems": compared},
                         indent=2))
        return 0
    print(f"eval {name}: {queries} queries, {len(beir.corpus)} corpus docs, top {args.k} chunks, {seconds:.1f} s")
    for entry in compared:
        if len(compared) > 1:
            print(f"\n{entry['system']}")
        print(format_table(entry["results"]))
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
    e.add_argument("--embedder", action="append", metavar="MODEL",
                   help="embedding model to compare, each in a fresh index (repeatable; default: the configured one)")
    e.add_argument("--reranker", action="append", metavar="MODEL",
                   help="cross-encoder measured on top of each embedder, beside it without one (repeatable)")
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
