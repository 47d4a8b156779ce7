"""The folder a tuning verb (``indexer tune-embedder``, ``indexer tune-reranker``) writes to:
the run in progress in ``OUT/run`` (resumed when its inputs are the same), and each finished
model, saved whole, in the next ``OUT/v1``, ``OUT/v2`` ... with its ``tuning.json`` manifest.
Also the checks and hashes both verbs put into that manifest."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import math
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MANIFEST = "tuning.json"
RUN_FOLDER = "run"  # checkpoints and mined data of the run in progress
LIBRARIES = ("sentence-transformers", "transformers", "torch")  # their versions go into the manifest


def local_model_folder(name: str, what_to_pass: str) -> Path:
    """The folder the model ``name`` loads from: a local folder, ``bundled:...``, or a hub id
    already in the local cache (no network is assumed). ``what_to_pass`` ends the error."""
    from indexer.embedder import resolve_model_path

    folder = Path(resolve_model_path(name))
    if not folder.is_dir() and not folder.is_absolute() and name.count("/") == 1:
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(name, local_files_only=True))
        except Exception:  # noqa: BLE001 - not in the cache: reported below as a missing folder
            pass
    if not (folder / "config.json").is_file() and not (folder / "modules.json").is_file():
        raise FileNotFoundError(f"no model folder at {folder}: pass {what_to_pass}")
    return folder


def open_run(run_dir: Path, fingerprint: str) -> dict[str, Any]:
    """The state of the run in ``run_dir``: a new one, or the unfinished one with the same fingerprint."""
    state_file = run_dir / "run.json"
    if state_file.is_file():
        state = json.loads(state_file.read_text(encoding="utf-8"))
        if state.get("fingerprint") == fingerprint:
            return state
        raise ValueError(f"{run_dir} holds an unfinished run with other pairs, eval sets, base model or settings: "
                         "re-run with those to resume it, or delete the folder to start afresh")
    if run_dir.exists():
        shutil.rmtree(run_dir)  # stopped before its state was written: nothing worth keeping
    run_dir.mkdir(parents=True)
    return {"fingerprint": fingerprint}


def save_version(model: Any, out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Saves into the next free ``OUT/vN``, whole or not at all (written aside, then renamed)."""
    taken = [int(m.group(1)) for p in out_dir.iterdir() if (m := re.fullmatch(r"v(\d+)", p.name))]
    version = f"v{max(taken, default=0) + 1}"
    partial = out_dir / f".{version}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    model.save(str(partial))
    (partial / MANIFEST).write_text(json.dumps({"version": version, **manifest}, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, out_dir / version)
    return out_dir / version


def checkpointed_schedule(settings: Any, n_rows: int, run_dir: Path, metric: str, *,
                          progress: bool) -> dict[str, Any]:
    """The trainer arguments both verbs share: ``settings.evaluations_per_epoch`` validation runs
    an epoch, a checkpoint at each in ``run_dir`` (the last two kept, and the best), the best
    by ``metric`` loaded at the end."""
    from indexer.embedder import cuda_available

    steps_per_epoch = math.ceil(n_rows / settings.batch_size)
    every = max(1, steps_per_epoch // settings.evaluations_per_epoch)
    return dict(
        output_dir=str(run_dir), num_train_epochs=settings.epochs, seed=settings.seed,
        per_device_train_batch_size=settings.batch_size, per_device_eval_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate, warmup_steps=settings.warmup_fraction,
        eval_strategy="steps", eval_steps=every, save_strategy="steps", save_steps=every, logging_steps=every,
        save_total_limit=2, load_best_model_at_end=True, greater_is_better=True,
        metric_for_best_model=f"eval_{metric}",
        # pinned memory only speeds copies to a GPU; without one, torch warns that it is unused
        dataloader_pin_memory=cuda_available(), report_to="none", disable_tqdm=not progress)


def run_fingerprint(pairs_path: Path, eval_sets: Sequence[Path], eval_fields: Sequence[str], settings: Any,
                    *model_folders: Path) -> str:
    """What a run depends on, hashed: a run resumes only where this is unchanged."""
    what = [sha256_of(pairs_path), [sha256_of(p) for p in eval_sets], list(eval_fields),
            *(str(f.resolve()) for f in model_folders), dataclasses.asdict(settings)]
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def input_record(pairs_path: Path, eval_sets: Sequence[Path], eval_fields: Sequence[str]) -> dict[str, Any]:
    """The manifest's account of the files a model was trained and decontaminated on."""
    return {"pairs_file": str(pairs_path), "pairs_sha256": sha256_of(pairs_path),
            "eval_sets": [{"path": str(p), "sha256": sha256_of(p)} for p in eval_sets],
            "eval_fields": list(eval_fields)}


def outcome_record(trainer: Any, run: dict[str, Any], metric: str, after: float, last: str | None,
                   started: float) -> dict[str, Any]:
    """The manifest's account of how a run went: validation before and after, steps, the
    checkpoint it resumed from and the one kept, seconds (since ``started``) and library versions."""
    return {"validation_metric": metric, "validation_before": run["validation_before"], "validation_after": after,
            "steps": trainer.state.global_step, "resumed_from": Path(last).name if last else None,
            "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name or None,
            "seconds": round(time.perf_counter() - started, 1), "versions": library_versions()}


def library_versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in LIBRARIES}


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
