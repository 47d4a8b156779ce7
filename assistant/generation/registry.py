"""The adapter registry: versioned adapter folders with a manifest, and which one is active.

    root/
      active.json           {"active": "v2", "history": [null, "v1", "v2"]}
      v1/  adapter_config.json  adapter_model.safetensors  manifest.json
      v2/  ...

A manifest records the base model and its hash, the hash of the tuning data, the
settings, the metrics and the gate's decision, and when it was made, and its lineage:
the stages that made it from the base model (``base → sft → prefer``), each with its
adapter and the hash of its data, and the ``parent`` adapter it was tuned from. Registering
copies into a hidden folder and renames it; ``active.json`` is replaced in one
``os.replace``: a crash leaves the previous state whole. Activation refuses an
adapter the gate rejected and one trained on another base model; rollback goes back
to the adapter active before. Writers take a file lock, since a tuning job's process
and the server share the registry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from assistant.json_files import write_json_atomically

ACTIVE_FILE = "active.json"
MANIFEST = "manifest.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")
_VERSION = re.compile(r"v(\d+)")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class RegistryError(ValueError):
    """An adapter that cannot be activated (unknown, rejected, another base model)."""


def file_hash(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def model_hash(model_dir: str | os.PathLike[str]) -> str:
    """SHA-256 over the config and weight files of a model folder (names and contents),
    so two copies of the same base model agree and any retrained one differs. A hub id
    that is not a local folder is identified by its name alone."""
    folder = Path(model_dir)
    if not folder.is_dir():
        name = os.fspath(model_dir)
        if "/" in name and not folder.is_absolute() and not name.startswith("."):
            return hashlib.sha256(f"hub:{name}".encode()).hexdigest()
        raise FileNotFoundError(f"no model folder at {folder}")
    digest = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder} holds no config.json or weight files")
    for path in files:
        digest.update(path.name.encode() + b"\0" + file_hash(path).encode())
    return digest.hexdigest()


class AdapterRegistry:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ---- reading ---------------------------------------------------------------------------------

    def names(self) -> list[str]:
        found = [p.name for p in self.root.iterdir() if (p / "adapter_config.json").is_file() and _NAME.fullmatch(p.name)]
        return sorted(found, key=lambda n: (0, int(m.group(1))) if (m := _VERSION.fullmatch(n)) else (1, n))

    def manifest(self, name: str) -> dict[str, Any]:
        """The manifest of ``name``. A peft folder put into the registry by hand has
        none: it is listed as ``unmanaged`` (no gate ran; its base model is checked
        by name when loaded)."""
        folder = self.root / name
        if not _NAME.fullmatch(name) or not (folder / "adapter_config.json").is_file():
            raise RegistryError(f"no adapter {name!r} in the registry; registered: {', '.join(self.names()) or 'none'}")
        if not (folder / MANIFEST).is_file():
            return {"name": name, "base_model": None, "base_model_hash": None, "data_hash": None, "settings": {},
                    "metrics": {}, "gate": {"decision": "unmanaged", "reason": "placed by hand: no manifest"},
                    "created": None}
        return dict(json.loads((folder / MANIFEST).read_text(encoding="utf-8")))

    def _state(self) -> dict[str, Any]:
        path = self.root / ACTIVE_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"active": None, "history": [None]}

    def active(self) -> str | None:
        return self._state()["active"]

    def list(self) -> list[dict[str, Any]]:
        active = self.active()
        return [self.manifest(n) | {"active": n == active} for n in self.names()]

    # ---- writing ---------------------------------------------------------------------------------

    def register(self, adapter_dir: str | os.PathLike[str], *, base_model: str, base_model_hash: str,
                 data_hash: str | None = None, settings: dict[str, Any] | None = None,
                 metrics: dict[str, Any] | None = None, name: str | None = None, stage: str = "sft",
                 parent: str | None = None) -> str:
        """Copies a peft adapter folder in as a new version (``v<n>`` unless named);
        its gate decision starts as ``pending``. ``stage`` is what made it, from the
        registered ``parent`` adapter (None: from the base model)."""
        source = Path(adapter_dir)
        if not (source / "adapter_config.json").is_file():
            raise ValueError(f"{source} is not a peft adapter folder (no adapter_config.json)")
        with self._locked():
            taken = set(self.names())
            if name is None:
                numbers = [int(m.group(1)) for n in taken if (m := _VERSION.fullmatch(n))]
                name = f"v{max(numbers, default=0) + 1}"
            elif not _NAME.fullmatch(name) or name == "base":
                raise ValueError(f"adapter name {name!r} must be letters, digits, '.', '_' or '-' (and not 'base')")
            if name in taken or (self.root / name).exists():
                raise ValueError(f"an adapter named {name!r} is already registered")
            if parent is not None and parent not in taken:
                raise ValueError(f"parent adapter {parent!r} is not registered")
            root = [{"stage": "base", "model": base_model, "hash": base_model_hash}]
            lineage = (self.manifest(parent).get("lineage") or root) if parent else root
            lineage = [*lineage, {"stage": stage, "adapter": name, "data_hash": data_hash}]
            manifest = {"name": name, "base_model": base_model, "base_model_hash": base_model_hash,
                        "parent": parent, "lineage": lineage,
                        "data_hash": data_hash, "settings": settings or {}, "metrics": metrics or {},
                        "gate": {"decision": "pending", "reason": "not evaluated yet"},
                        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            tmp = self.root / f".tmp-{name}"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("README.md"))
            write_json_atomically(tmp / MANIFEST, manifest)
            tmp.rename(self.root / name)
        return name

    def record_gate(self, name: str, report: dict[str, Any]) -> dict[str, Any]:
        """Stores the gate's report and decision (``accepted`` or ``rejected``) in the manifest."""
        with self._locked():
            manifest = self.manifest(name)
            manifest["gate"] = {"decision": "accepted" if report["accepted"] else "rejected",
                                "reason": report["reason"], "report": report}
            manifest["metrics"] = manifest.get("metrics", {}) | {"domain": report.get("domain"),
                                                                 "drift": report.get("drift")}
            write_json_atomically(self.root / name / MANIFEST, manifest)
        return manifest

    def check_activatable(self, name: str, base_model_hash: str | None, *, force: bool = False) -> dict[str, Any]:
        manifest = self.manifest(name)
        decision = manifest["gate"]["decision"]
        if decision not in ("accepted", "unmanaged") and not force:
            raise RegistryError(f"adapter {name!r} is {decision} by the gate ({manifest['gate']['reason']}); "
                                "activate it with force to override")
        if base_model_hash is not None and manifest["base_model_hash"] not in (None, base_model_hash):
            raise RegistryError(f"adapter {name!r} was trained on base model {manifest['base_model']} "
                                f"(hash {manifest['base_model_hash'][:12]}), not the one loaded here "
                                f"(hash {base_model_hash[:12]}); retrain it on this base model")
        return manifest

    def activate(self, name: str | None, *, base_model_hash: str | None = None, force: bool = False) -> None:
        """Makes ``name`` (None: the base model) active, after the checks above."""
        with self._locked():
            if name is not None:
                self.check_activatable(name, base_model_hash, force=force)
            state = self._state()
            if state["active"] != name:
                state = {"active": name, "history": [*state["history"], name][-50:]}
                write_json_atomically(self.root / ACTIVE_FILE, state)

    def previous(self) -> str | None:
        """What :meth:`rollback` would make active; ``RegistryError`` when nothing."""
        history = self._state()["history"]
        if len(history) < 2:
            raise RegistryError("nothing to roll back to: no adapter was active before this one")
        return history[-2]

    def rollback(self) -> str | None:
        """Back to the adapter active before the current one; returns it (None: base)."""
        with self._locked():
            state = self._state()
            history = list(state["history"])
            if len(history) < 2:
                raise RegistryError("nothing to roll back to: no adapter was active before this one")
            history.pop()
            write_json_atomically(self.root / ACTIVE_FILE, {"active": history[-1], "history": history})
            return history[-1]
