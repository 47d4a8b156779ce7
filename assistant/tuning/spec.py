"""What a re-tuning run is asked to do (:class:`RetuneRequest`, also the body of
``POST /v1/tuning/jobs``), where it runs (:class:`RetuneSpec`, saved as the job's
``spec.json``), and what it reports: :class:`RetuneResult` (``result.json``) and
:class:`JobProgress` (``progress.json``, rewritten as the run goes), so that the
service's jobs read typed files, never a log."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.generation.model_files import DEFAULT_MODEL
from assistant.json_files import write_json_atomically
from assistant.tuning.gate import GateSettings
from assistant.tuning.prefer import PreferSettings
from assistant.tuning.raft import RaftSettings
from assistant.tuning.synthetic_pairs import SyntheticSettings
from assistant.tuning.train_settings import TuneSettings

STAGE_NAMES = ("sft", "prefer")
"""What a run can do, in this order: supervised RAFT tuning, then preference tuning."""


@dataclass(frozen=True, kw_only=True)
class RetuneRequest:
    """What a user asks for (also the body of ``POST /v1/tuning/jobs``)."""

    pairs: str
    """Curated pairs (JSONL); over HTTP, a path inside the data directory."""
    stages: tuple[str, ...] = ("sft",)
    """``sft``, ``prefer``, or both in that order."""
    parent: str | None = None
    """prefer alone: the registered adapter to tune (default: the active one)."""
    preferences: str | None = None
    """prefer: a preference file (:mod:`.preferences`: ``assistant curate``'s or the user's own)."""
    synthesize: bool = True
    """prefer: add on-policy pairs from the curated pairs' contexts (:mod:`.synthetic_pairs`)."""
    eval_set: str | None = None
    """Held-out items for the gate (evaluation format); default: a share of the pairs."""
    holdout_fraction: float = 0.1
    eval_limit: int | None = 200
    activate: bool = True
    """Activate the adapter when the gate accepts it."""
    tune: dict[str, Any] = field(default_factory=dict)
    raft: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    prefer: dict[str, Any] = field(default_factory=dict)
    synthetic: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RetuneSpec(RetuneRequest):
    """A request with where it runs, checked whole before anything runs."""

    index_dir: str
    registry_dir: str
    work_dir: str
    model: str = DEFAULT_MODEL

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        object.__setattr__(self, "stages", stages)  # JSON gives a list
        if not stages or any(s not in STAGE_NAMES for s in stages) or list(stages) != sorted(
                set(stages), key=STAGE_NAMES.index):
            raise ValueError(f"stages must be sft, prefer, or sft,prefer (in that order), got {','.join(stages)}")
        if self.parent is not None and "sft" in stages:
            raise ValueError("parent names the adapter prefer starts from when sft does not run; "
                             "with sft the new supervised adapter is the parent")
        if "prefer" in stages and not self.synthesize and not self.preferences:
            raise ValueError("the prefer stage needs preferences: a preferences file, synthesize, or both")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ValueError(f"eval_limit must be at least 1 (or null for all), got {self.eval_limit}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        reserved = {"model", "data", "out"} & set(self.tune)
        if reserved:
            raise ValueError(f"tune settings may not set {', '.join(sorted(reserved))}; the job chooses them")
        # fail now, not after an hour of preparation
        checks: tuple[tuple[str, type, dict[str, Any]], ...] = (
            ("tune", TuneSettings, {"model": "m", "data": "d", "out": "o"}), ("raft", RaftSettings, {}),
            ("gate", GateSettings, {}), ("prefer", PreferSettings, {}), ("synthetic", SyntheticSettings, {}))
        for name, kind, extra in checks:
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


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, or being replaced
        return None


@dataclass
class RetuneResult:
    """The summary of a finished run, or the error that ended it."""

    adapter: str | None = None
    accepted: bool = False
    reason: str = ""
    activated: bool = False
    gate: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    raft: dict[str, Any] = field(default_factory=dict)
    prefer: dict[str, Any] = field(default_factory=dict)
    """The prefer stage: its data (sources, pairs, counts), training summary and parent."""
    adapters: dict[str, str] = field(default_factory=dict)
    """The adapter each stage registered (``{"sft": "v3", "prefer": "v4"}``); ``adapter`` is the last."""
    error: str | None = None
    """Why the run failed (then nothing else is set)."""
    activation_error: str | None = None
    """Why the service could not activate an accepted adapter."""

    def save(self, path: Path) -> None:
        write_json_atomically(path, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: Path) -> RetuneResult | None:
        """The result in ``path``; None when the run wrote none (it died first)."""
        data = _read(path)
        if not isinstance(data, dict):
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class JobProgress:
    """The stage a run is in, when each stage began, and the last training figures."""

    path: Path
    stage: str = ""
    stages: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] | None = None

    def enter(self, stage: str, **info: Any) -> None:
        """Records ``stage`` (again, with more ``info``, when it is already the current one)."""
        if stage == self.stage:
            self.stages[stage].update(info)
        else:
            self.stage = stage
            self.stages[stage] = {"at": time.time(), **info}
        self._save()

    def on_train_row(self, row: dict[str, Any]) -> None:
        """A training-log row from the trainer: the step figures, then each eval."""
        training = self.training or {}
        if row["kind"] == "eval":
            training["eval_loss"] = row["eval_loss"]
        else:
            training |= {"step": row["step"], "max_steps": row["max_steps"], "loss": row["loss"],
                         "tokens_per_s": row["tokens_per_s"]}
        self.training = training
        self._save()

    def _save(self) -> None:
        write_json_atomically(self.path, {"stage": self.stage, "stages": self.stages, "training": self.training})

    @classmethod
    def read(cls, path: Path) -> dict[str, Any] | None:
        data = _read(path)
        return data if isinstance(data, dict) else None
