"""The ``indexer tune-reranker`` verb: :func:`indexer.reranker_tuning.tune_reranker` from the
command line, one option per :class:`~indexer.reranker_tuning.RerankerTuningSettings` field.

    indexer tune-reranker --pairs curated/qa.jsonl --out models/reranker \\
        [--base CROSS_ENCODER] [--miner EMBEDDER] [--eval-set EVAL.jsonl ...] [--layers 3] [--json]
    INDEXER_RERANKER=models/reranker/v1 INDEXER_RERANK_DEPTH=20 indexer search ...
"""

from __future__ import annotations

import argparse

from indexer.embedder_tuning_cli import add_tuning_options, report, settings_from
from indexer.reranker_tuning import DEFAULT_BASE, RerankerTuningSettings


def add_tune_reranker_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("tune-reranker", help="train a cross-encoder reranker on (question, passage) pairs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--base", default=None,
                   help=f"cross-encoder (folder or cached hub id) to train (default: {DEFAULT_BASE}'s weights)")
    t.add_argument("--miner", default=None,
                   help="embedder that mines the negatives: the first stage the reranker follows "
                        "(default: the index's embedder, INDEXER_EMBEDDING_MODEL)")
    add_tuning_options(t, RerankerTuningSettings)
    t.set_defaults(func=cmd_tune_reranker)


def cmd_tune_reranker(args: argparse.Namespace) -> int:
    from indexer.reranker_tuning import tune_reranker

    folder, manifest = tune_reranker(args.pairs, args.out, settings_from(args, RerankerTuningSettings),
                                     base=args.base, miner=args.miner, eval_sets=args.eval_set,
                                     eval_fields=args.eval_field, progress=not args.quiet)
    return report(args, folder, manifest, "trained a reranker from")
