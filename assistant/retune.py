"""One re-tuning run from curated pairs to a gated adapter in the registry.

    python -m assistant.retune --spec JOB_DIR/spec.json

Stages, each recorded in ``JOB_DIR/progress.json``: ``prepare`` (the RAFT set, see
:mod:`assistant.raft`), ``train`` (:mod:`assistant.tune`; a second run in the same
folder resumes from the last checkpoint), ``register`` (the adapter of the lowest
eval loss, with its manifest), ``gate`` (:mod:`assistant.gate`) and ``activate``
(only when the gate accepts and the spec asks for it). The summary goes to
``JOB_DIR/result.json``. ``assistant tune`` runs this in the foreground; the
service's tuning jobs run it in a child process.

The held-out items the gate scores come from ``eval_set`` (the evaluation format of
:mod:`assistant.eval_sets`) or, without one, from a seeded share of the pairs, which
are then kept out of training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.curated import QAPair
from assistant.eval_sets import EvalItem


@dataclass(frozen=True, kw_only=True)
class RetuneRequest:
    """What a user asks for (also the body of ``POST /v1/tuning/jobs``)."""

    pairs: str
    """Curated pairs (JSONL); over HTTP, a path inside the data directory."""
    eval_set: str | None = None
    """Held-out items for the gate (evaluation format); default: a share of the pairs."""
    holdout_fraction: float = 0.1
    eval_limit: int | None = 200
    activate: bool = True
    """Activate the adapter when the gate accepts it."""
    tune: dict[str, Any] = field(default_factory=dict)
    raft: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RetuneSpec(RetuneRequest):
    """A request with where it runs, checked whole before anything runs."""

    index_dir: str
    registry_dir: str
    work_dir: str
    model: str = "bundled:smollm2"

    def __post_init__(self) -> None:
        from assistant.gate import GateSettings
        from assistant.raft import RaftSettings
        from assistant.tune import TuneSettings

        if self.eval_limit is not None and self.eval_limit < 1:
            raise ValueError(f"eval_limit must be at least 1 (or null for all), got {self.eval_limit}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        reserved = {"model", "data", "out"} & set(self.tune)
        if reserved:
            raise ValueError(f"tune settings may not set {', '.join(sorted(reserved))}; the job chooses them")
        # fail now, not after an hour of preparation
        for name, kind, extra in (("tune", TuneSettings, {"model": "m", "data": "d", "out": "o"}),
                                  ("raft", RaftSettings, {}), ("gate", GateSettings, {})):
            values = getattr(self, name)
            known = {f.name for f in dataclasses.fields(kind)}
            unknown = set(values) - known
            if unknown:
                raise ValueError(f"unknown {name} settings: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
            try:
                kind(**extra, **values)
            except TypeError as exc:
                raise ValueError(f"bad {name} settings: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> RetuneSpec:
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n", encoding="utf-8")


def split_holdout(pairs: list[QAPair], fraction: float, limit: int | None) -> tuple[list[QAPair], list[EvalItem]]:
    """A seeded share of the pairs as free-form eval items; the rest for training."""
    order = list(range(len(pairs)))
    random.Random(0).shuffle(order)
    n = max(1, round(len(pairs) * fraction))
    if limit is not None:
        n = min(n, limit)
    if n >= len(pairs):
        raise ValueError(f"{len(pairs)} pairs are too few to hold {n} out for the gate; add pairs or pass an eval set")
    held = set(order[:n])
    items = [EvalItem(p.id or f"pair-{i}", p.question, p.answer, "free") for i, p in enumerate(pairs) if i in held]
    return [p for i, p in enumerate(pairs) if i not in held], items


class Progress:
    def __init__(self, path: Path):
        self.path = path
        self.stages: dict[str, Any] = {}

    def __call__(self, stage: str, **info: Any) -> None:
        self.stages[stage] = {"at": time.time(), **info}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"stage": stage, "stages": self.stages}), encoding="utf-8")
        tmp.replace(self.path)
        print(f"[retune] {stage} {json.dumps(info) if info else ''}", file=sys.stderr, flush=True)


def run(spec: RetuneSpec, *, activate_here: bool = True) -> dict[str, Any]:
    """The pipeline. With ``activate_here`` False (a service job) an accepted adapter is
    only reported; the service activates it, so the registry and the served adapter
    change together."""
    from assistant.curated import read_pairs
    from assistant.eval_sets import read_eval_set
    from assistant.gate import GateSettings, run_gate
    from assistant.generation import GenerationSettings, LocalGenerator, resolve_model_dir
    from assistant.raft import RaftSettings, build_raft_set
    from assistant.registry import AdapterRegistry, file_hash, model_hash
    from assistant.tune import TuneSettings, train
    from indexer.index import Index

    work = Path(spec.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    progress = Progress(work / "progress.json")
    model_dir = resolve_model_dir(spec.model)
    registry = AdapterRegistry(spec.registry_dir)

    progress("prepare")
    base_hash = model_hash(model_dir)  # fails now on a missing base, not after training
    pairs, problems = read_pairs(spec.pairs)
    for where, reason in problems[:20]:
        print(f"skipped {where}: {reason}", file=sys.stderr, flush=True)
    if spec.eval_set:
        items = read_eval_set(spec.eval_set, limit=spec.eval_limit)
        train_pairs = pairs
    else:
        train_pairs, items = split_holdout(pairs, spec.holdout_fraction, spec.eval_limit)
    if not items:
        raise ValueError("no held-out items for the gate")
    packed = work / "raft" / "packed.npz"
    with Index.open(spec.index_dir) as index:
        if not (work / "raft" / "report.json").is_file():  # written last: a resumed job keeps its set
            built = build_raft_set(train_pairs, index, model_dir, malformed=problems,
                                   eval_texts=[t for i in items for t in (i.question, i.answer)],
                                   settings=RaftSettings(**spec.raft))
            built.save(work / "raft")
        report = json.loads((work / "raft" / "report.json").read_text(encoding="utf-8"))
        progress("prepare", examples=report["examples_out"], sequences=report["sequences"])

        tune_settings = TuneSettings(model=model_dir, data=str(packed), out=str(work / "tune"), **spec.tune)
        progress("train", max_steps=tune_settings.max_steps)
        summary = train(tune_settings)

        progress("register")
        adapter_dir = work / "tune" / ("best" if (work / "tune" / "best").is_dir() else "adapter")
        registered = work / "registered.txt"  # a job resumed after this stage reuses its version
        name = registered.read_text(encoding="utf-8").strip() if registered.is_file() else ""
        if name not in registry.names():
            name = registry.register(adapter_dir, base_model=spec.model, base_model_hash=base_hash,
                                     data_hash=file_hash(packed), settings=dataclasses.asdict(tune_settings),
                                     metrics={"train": summary, "raft": report})
            registered.write_text(name, encoding="utf-8")
        progress("register", adapter=name)

        progress("gate", items=len(items))
        generator = LocalGenerator(GenerationSettings(model=spec.model, adapters_dir=registry.root))
        gate = run_gate(generator, name, items, index, settings=GateSettings(**spec.gate),
                        cache=registry.root / ".probe" / f"{base_hash[:16]}.json", progress=True)
    registry.record_gate(name, gate)
    activated = False
    if gate["accepted"] and spec.activate and activate_here:
        registry.activate(name, base_model_hash=base_hash)
        activated = True
    progress("done", adapter=name, accepted=gate["accepted"], activated=activated)
    return {"adapter": name, "accepted": gate["accepted"], "reason": gate["reason"], "activated": activated,
            "gate": gate, "train": summary, "raft": report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assistant.retune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, required=True, help="spec.json of the job (RetuneSpec fields); "
                        "an accepted adapter is registered, and activated by the service that started the job")
    args = parser.parse_args(argv)
    result_path = args.spec.parent / "result.json"
    try:
        result = run(RetuneSpec.load(args.spec), activate_here=False)  # the service activates
    except (ValueError, FileNotFoundError) as exc:
        result_path.write_text(json.dumps({"error": str(exc)}) + "\n", encoding="utf-8")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("adapter", "accepted", "reason", "activated")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
