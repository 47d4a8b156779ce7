"""The ``indexer reembed`` verb: :func:`indexer.reembed.reembed` from the command line.

    indexer reembed --index my-index --embedder models/embedder/v2 [--force] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_reembed_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("reembed", help="re-embed every chunk of an index with another embedder, switching atomically",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--index", type=Path, required=True, help="index folder")
    r.add_argument("--embedder", required=True, help="sentence-transformers model folder (or hub id) to embed with")
    r.add_argument("--batch-size", type=int, default=64, help="chunks per encode batch (default %(default)s)")
    r.add_argument("--force", action="store_true", help="re-embed even when the index records this model already")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_reembed)


def cmd_reembed(args: argparse.Namespace) -> int:
    from indexer.reembed import reembed

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    report = reembed(args.index, args.embedder, batch_size=args.batch_size, force=args.force, progress=not args.quiet)
    if args.json:
        print(json.dumps(report.as_dict()))
    elif not report.embedded and not report.resumed:
        print(f"the index at {report.index} is already embedded by {report.model}; nothing to do (--force re-embeds)")
    else:
        print(f"re-embedded {report.chunks} chunks of {report.index}: {report.previous_model} ({report.previous_dim}-d) "
              f"-> {report.model} ({report.dim}-d); {report.embedded} embedded, {report.resumed} resumed from an "
              f"earlier run, {report.seconds:.1f} s ({report.chunks_per_s:.0f} chunks/s)")
    return 0
