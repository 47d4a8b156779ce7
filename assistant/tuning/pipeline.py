"""One re-tuning run, from curated pairs to a gated adapter in the registry, as ordered
stages that read top to bottom (:data:`STAGES`).

    python -m assistant.tuning.pipeline --spec JOB_DIR/spec.json

``prepare``  the curated pairs, the held-out items for the gate, and the packed RAFT set
             (:mod:`.pairs`, :mod:`.raft`); a resumed run keeps the set it built
``train``    the QLoRA recipe (:mod:`.trainer`); a second run in the same folder resumes
             from the last checkpoint
``gate``     base model against the adapter of the lowest eval loss on the held-out
             items, and general drift (:mod:`.gate`)
``register`` the adapter into the registry with its manifest and the gate's decision

With ``stages`` ``sft,prefer`` (or ``prefer`` alone, from a registered ``parent``), the
supervised adapter is then tuned on preferences (:mod:`.prefer`):

``prefer-data``      on-policy pairs from the curated pairs' contexts (:mod:`.synthetic_pairs`)
                     and the preference file, deduplicated and decontaminated against the
                     held-out items (:mod:`.preferences`); a resumed run keeps the set it built
``prefer``           DPO (pairs) or KTO (thumbs) on a copy of the parent adapter; resumes
``prefer-gate``      the gate again, and the new adapter held to its parent: no higher
                     hallucination on the unanswerable split, no more than a small score drop
``prefer-register``  the adapter into the registry as the parent's child (its lineage)

Then, when the gate accepts and the spec asks for it, the adapter is activated: here
for ``assistant tune``; by the service for a tuning job, so that the registry and the
served adapter change together. Each stage is recorded in ``JOB_DIR/progress.json``
and the summary in ``JOB_DIR/result.json`` (:mod:`.spec`). A new stage is a module with
its work and one line in :data:`STAGES`.

The held-out items come from ``eval_set`` (the format of :mod:`assistant.evaluation.sets`)
or, without one, from a seeded share of the pairs, which are then kept out of training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.evaluation.sets import EvalItem, read_eval_set
from assistant.generation.base import GenerationSettings
from assistant.generation.model_files import resolve_model_dir
from assistant.generation.registry import AdapterRegistry, file_hash, model_hash
from assistant.json_files import write_json_atomically
from assistant.tuning.gate import GateSettings, run_gate
from assistant.tuning.pairs import QAPair, read_pairs, split_holdout
from assistant.tuning.prefer import PreferSettings
from assistant.tuning.preferences import PreferenceData, dedupe, read_preferences
from assistant.tuning.raft import RaftSettings, build_raft_set
from assistant.tuning.spec import JobProgress, RetuneResult, RetuneSpec
from assistant.tuning.synthetic_pairs import SyntheticSettings
from assistant.tuning.train_settings import TuneSettings
from indexer.index import Index


@dataclass
class Run:
    """What the stages share: the spec, where they work, and what each stage left."""

    spec: RetuneSpec
    work: Path
    index: Index
    registry: AdapterRegistry
    progress: JobProgress
    model_dir: str
    base_hash: str
    pairs: list[QAPair] = field(default_factory=list)
    heldout: list[EvalItem] = field(default_factory=list)
    raft: dict[str, Any] = field(default_factory=dict)
    tune: TuneSettings | None = None
    train: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    adapter: str | None = None
    adapters: dict[str, str] = field(default_factory=dict)
    prefer: dict[str, Any] = field(default_factory=dict)
    preferences: PreferenceData | None = None

    @property
    def packed(self) -> Path:
        return self.work / "raft" / "packed.npz"

    @property
    def trained_adapter(self) -> Path:
        """The adapter of the lowest eval loss, or the last one when there was no eval."""
        best = self.work / "tune" / "best"
        return best if best.is_dir() else self.work / "tune" / "adapter"


def prepare(run: Run) -> dict[str, Any]:
    pairs, problems = read_pairs(run.spec.pairs)
    for where, reason in problems[:20]:
        print(f"skipped {where}: {reason}", file=sys.stderr, flush=True)
    if run.spec.eval_set:
        run.pairs, run.heldout = pairs, read_eval_set(run.spec.eval_set, limit=run.spec.eval_limit)
    else:
        run.pairs, run.heldout = split_holdout(pairs, run.spec.holdout_fraction, run.spec.eval_limit)
    if not run.heldout:
        raise ValueError("no held-out items for the gate")
    if "sft" not in run.spec.stages:
        return {"pairs": len(run.pairs), "heldout": len(run.heldout)}
    if not (run.work / "raft" / "report.json").is_file():  # written last: a resumed job keeps its set
        built = build_raft_set(run.pairs, run.index, run.model_dir, malformed=problems,
                               eval_texts=[t for i in run.heldout for t in (i.question, i.answer)],
                               settings=RaftSettings(**run.spec.raft))
        built.save(run.work / "raft")
    run.raft = json.loads((run.work / "raft" / "report.json").read_text(encoding="utf-8"))
    return {"examples": run.raft["examples_out"], "sequences": run.raft["sequences"]}


def train(run: Run) -> dict[str, Any]:
    from assistant.tuning.trainer import train as train_recipe  # torch: loaded only when training

    run.tune = TuneSettings(model=run.model_dir, data=str(run.packed), out=str(run.work / "tune"), **run.spec.tune)
    run.progress.enter("train", max_steps=run.tune.max_steps)
    run.train = train_recipe(run.tune, on_step=run.progress.on_train_row)
    return {"step": run.train["step"]}


def gate(run: Run) -> dict[str, Any]:
    from assistant.generation.local import LocalGenerator

    trained = run.trained_adapter
    generator = LocalGenerator(GenerationSettings(model=run.spec.model, adapters_dir=trained.parent))
    run.progress.enter("gate", items=len(run.heldout))
    run.gate = run_gate(generator, trained.name, run.heldout, run.index, settings=GateSettings(**run.spec.gate),
                        cache=run.registry.root / ".probe" / f"{run.base_hash[:16]}.json", progress=True)
    return {"accepted": run.gate["accepted"]}


def register(run: Run) -> dict[str, Any]:
    assert run.tune is not None
    name = _register_once(run, "registered.txt", run.trained_adapter, stage="sft", parent=None,
                          data_hash=file_hash(run.packed), settings=dataclasses.asdict(run.tune),
                          metrics={"train": run.train, "raft": run.raft})
    run.registry.record_gate(name, run.gate)
    run.adapter = run.adapters["sft"] = name
    return {"adapter": name}


def _register_once(run: Run, marker: str, folder: Path, **manifest: Any) -> str:
    """Registers ``folder`` unless a run resumed after this step already did (``marker``
    keeps the version it got)."""
    registered = run.work / marker
    name = registered.read_text(encoding="utf-8").strip() if registered.is_file() else ""
    if name not in run.registry.names():
        name = run.registry.register(folder, base_model=run.spec.model, base_model_hash=run.base_hash, **manifest)
        registered.write_text(name, encoding="utf-8")
    return name


def _parent(run: Run) -> str:
    """The adapter the prefer stage starts from: this run's supervised adapter, the
    spec's ``parent``, or the active adapter."""
    name = run.adapters.get("sft") or run.spec.parent or run.registry.active()
    if name is None:
        raise ValueError("prefer needs a supervised adapter to start from: run the sft stage too, "
                         "name a registered parent, or activate one")
    run.registry.manifest(name)  # a clear error for an unknown name
    return name


def prefer_data(run: Run) -> dict[str, Any]:
    """Synthetic on-policy pairs and the preference file, deduplicated and decontaminated."""
    from transformers import AutoTokenizer

    from assistant.generation.local import LocalGenerator
    from assistant.grounding.verify import OverlapVerifier
    from assistant.tuning.prefer import prompt_counter
    from assistant.tuning.synthetic_pairs import preference_contexts, synthesize_pairs

    folder, parent = run.work / "prefer-data", _parent(run)
    report_path = folder / "report.json"
    if report_path.is_file():  # written last: a resumed job keeps its data
        run.preferences = read_preferences(folder / "preferences.jsonl")
        run.prefer = json.loads(report_path.read_text(encoding="utf-8"))
        return {"rows": len(run.preferences)}
    settings = PreferSettings(**run.spec.prefer)
    count = prompt_counter(AutoTokenizer.from_pretrained(run.model_dir))
    data = PreferenceData([], [])
    report: dict[str, Any] = {"parent": parent, "sources": {}}
    if run.spec.preferences:  # the user's rows first: a bad one stops the run before any generation
        given = read_preferences(run.spec.preferences, count_tokens=count, max_prompt_tokens=settings.max_prompt_tokens)
        data.extend(given)
        report["sources"]["file"] = {"path": run.spec.preferences, "pairs": len(given.pairs),
                                     "unpaired": len(given.unpaired)}
    if run.spec.synthesize:
        synthetic = SyntheticSettings(**run.spec.synthetic)
        generator = LocalGenerator(GenerationSettings(model=run.spec.model, adapters_dir=run.registry.root))
        contexts = preference_contexts(run.pairs, run.index, RaftSettings(**run.spec.raft), synthetic)
        run.progress.enter("prefer-data", contexts=len(contexts))
        made, counts = synthesize_pairs(generator, parent, contexts, OverlapVerifier(run.index.embedder.embed_to_compare),
                                        embed=run.index.embedder.embed_to_compare, settings=synthetic, progress=True)
        fits = [p for p in made.pairs if count(p.prompt) <= settings.max_prompt_tokens]
        counts["over_max_prompt_tokens"] = len(made.pairs) - len(fits)
        data.extend(PreferenceData(fits, []))
        report["sources"]["synthetic"] = counts
    kept, cleaned = dedupe(data, [t for i in run.heldout for t in (i.question, i.answer)])
    if not len(kept):
        raise ValueError("no preference data left to train on: " + json.dumps(report["sources"] | cleaned))
    report |= cleaned | {"pairs": len(kept.pairs), "unpaired": len(kept.unpaired)}
    folder.mkdir(parents=True, exist_ok=True)
    kept.write(folder / "preferences.jsonl")
    write_json_atomically(report_path, report)
    run.preferences, run.prefer = kept, report
    return {"pairs": len(kept.pairs), "unpaired": len(kept.unpaired)}


def prefer(run: Run) -> dict[str, Any]:
    from assistant.tuning.prefer import train_preferences  # torch and TRL: loaded only when training

    assert run.preferences is not None
    settings = PreferSettings(**run.spec.prefer)
    run.progress.enter("prefer", method=settings.method_for(run.preferences))
    summary = train_preferences(settings, model=run.model_dir, parent=run.registry.root / run.prefer["parent"],
                                data=run.preferences, out=run.work / "prefer", on_step=run.progress.on_train_row)
    run.prefer["train"] = summary
    return {"step": summary["step"], "method": summary["method"]}


def prefer_gate(run: Run) -> dict[str, Any]:
    from assistant.generation.local import LocalGenerator

    # the generator loads adapters by name from one folder: the candidate and its parent
    links = run.work / ".gate-adapters"
    shutil.rmtree(links, ignore_errors=True)
    links.mkdir()
    (links / "candidate").symlink_to((run.work / "prefer" / "adapter").resolve())
    (links / "parent").symlink_to((run.registry.root / run.prefer["parent"]).resolve())
    generator = LocalGenerator(GenerationSettings(model=run.spec.model, adapters_dir=links))
    run.progress.enter("prefer-gate", items=len(run.heldout))
    run.gate = run_gate(generator, "candidate", run.heldout, run.index, settings=GateSettings(**run.spec.gate),
                        cache=run.registry.root / ".probe" / f"{run.base_hash[:16]}.json", progress=True,
                        parent="parent")
    run.gate["parent"]["name"] = run.prefer["parent"]
    return {"accepted": run.gate["accepted"]}


def _prefer_summary(run: Run) -> dict[str, Any]:
    """The prefer stage's data report and training summary, without the per-step log."""
    summary = {k: v for k, v in run.prefer.items() if k != "train"}
    if "train" in run.prefer:
        summary["train"] = {k: v for k, v in run.prefer["train"].items() if k != "log"}
    return summary


def prefer_register(run: Run) -> dict[str, Any]:
    data = run.work / "prefer-data" / "preferences.jsonl"
    name = _register_once(run, "registered-prefer.txt", run.work / "prefer" / "adapter", stage="prefer",
                          parent=run.prefer["parent"], data_hash=file_hash(data),
                          settings=dataclasses.asdict(PreferSettings(**run.spec.prefer)),
                          metrics=_prefer_summary(run))
    run.registry.record_gate(name, run.gate)
    run.adapter = run.adapters["prefer"] = name
    return {"adapter": name}


Stage = Callable[[Run], dict[str, Any]]
STAGES: tuple[tuple[str, str, Stage], ...] = (
    # (name, the requested stage it belongs to, its work); prepare runs for every request
    ("prepare", "", prepare),
    ("train", "sft", train),
    ("gate", "sft", gate),
    ("register", "sft", register),
    ("prefer-data", "prefer", prefer_data),
    ("prefer", "prefer", prefer),
    ("prefer-gate", "prefer", prefer_gate),
    ("prefer-register", "prefer", prefer_register),
)


def run(spec: RetuneSpec, *, activate_here: bool = True) -> RetuneResult:
    """Every stage in order. With ``activate_here`` False (a service job) an accepted
    adapter is only reported; the service activates it."""
    work = Path(spec.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    progress = JobProgress(work / "progress.json")
    progress.enter("prepare")
    model_dir = resolve_model_dir(spec.model)
    base_hash = model_hash(model_dir)  # fails now on a missing base, not after training
    with Index.open(spec.index_dir) as index:
        state = Run(spec, work, index, AdapterRegistry(spec.registry_dir), progress, model_dir, base_hash)
        for name, requested, stage in STAGES:
            if requested and requested not in spec.stages:
                continue
            if progress.stage != name:
                progress.enter(name)
            progress.enter(name, **stage(state))
    activated = False
    if state.gate["accepted"] and spec.activate and activate_here:
        state.registry.activate(state.adapter, base_model_hash=base_hash)
        activated = True
    progress.enter("done", adapter=state.adapter, accepted=state.gate["accepted"], activated=activated)
    return RetuneResult(adapter=state.adapter, accepted=state.gate["accepted"], reason=state.gate["reason"],
                        activated=activated, gate=state.gate, train=state.train, raft=state.raft,
                        prefer=_prefer_summary(state),
                        adapters=state.adapters)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assistant.tuning.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, required=True, help="spec.json of the job (RetuneSpec fields); "
                        "an accepted adapter is registered, and activated by the service that started the job")
    args = parser.parse_args(argv)
    result_path = args.spec.parent / "result.json"
    try:
        result = run(RetuneSpec.load(args.spec), activate_here=False)  # the service activates
    except (ValueError, FileNotFoundError) as exc:  # PreferenceFileError and RegistryError are ValueErrors
        RetuneResult(error=str(exc)).save(result_path)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result.save(result_path)
    print(json.dumps({k: getattr(result, k) for k in ("adapter", "accepted", "reason", "activated")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
