"""The ``indexer tune-embedder`` verb: :func:`indexer.embedder_tuning.tune_embedder` from the
command line, one option per :class:`~indexer.embedder_tuning.TuningSettings` field.

    indexer tune-embedder --pairs curated/qa.jsonl --out models/embedder \\
        [--base MODEL_DIR] [--eval-set EVAL.jsonl ...] [--epochs 2] [--batch-size 32] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from indexer.embedder_tuning import TuningSettings


def add_tune_embedder_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("tune-embedder", help="train a copy of the embedder on (question, passage) pairs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--base", default=None, help="model folder to tune (default: the index's embedder)")
    add_tuning_options(t, TuningSettings)
    t.set_defaults(func=cmd_tune_embedder)


def add_tuning_options(t: argparse.ArgumentParser, settings_class: type) -> None:
    """The options every tuning verb takes: inputs, output, one per settings field, output format."""
    t.add_argument("--pairs", type=Path, required=True,
                   help="JSONL with 'question' and 'passage' (or the curated 'answer'/'context') fields")
    t.add_argument("--out", type=Path, required=True, help="folder of the versions (v1, v2 ...) and of the run")
    t.add_argument("--eval-set", type=Path, nargs="*", default=[], help="JSONL eval sets whose questions must not leak")
    t.add_argument("--eval-field", nargs="*", default=["question"], help="their fields to check (default: question)")
    for setting in dataclasses.fields(settings_class):
        t.add_argument(f"--{setting.name.replace('_', '-')}", type=type(setting.default), default=setting.default,
                       help=f"{setting.metadata['help']} (default %(default)s)")
    t.add_argument("--json", action="store_true", help="print the manifest as JSON")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def settings_from(args: argparse.Namespace, settings_class: type) -> Any:
    return settings_class(**{s.name: getattr(args, s.name) for s in dataclasses.fields(settings_class)})


def report(args: argparse.Namespace, folder: Path, manifest: dict[str, Any], what: str) -> int:
    """Prints the manifest (``--json``) or one line on what was trained into ``folder``."""
    if args.json:
        print(json.dumps(manifest))
        return 0
    counts = manifest["counts"]
    print(f"{what} {manifest['base_model']} into {folder}: {counts['training']} training pairs "
          f"({counts['contaminated']} dropped as eval overlaps), validation {manifest['validation_metric']} "
          f"{manifest['validation_before']:.4f} -> {manifest['validation_after']:.4f}, "
          f"{manifest['steps']} steps in {manifest['seconds']:.0f} s")
    return 0


def cmd_tune_embedder(args: argparse.Namespace) -> int:
    from indexer.embedder_tuning import tune_embedder

    folder, manifest = tune_embedder(args.pairs, args.out, settings_from(args, TuningSettings), base=args.base,
                                     eval_sets=args.eval_set, eval_fields=args.eval_field, progress=not args.quiet)
    return report(args, folder, manifest, "tuned")
