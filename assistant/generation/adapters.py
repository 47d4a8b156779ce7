"""One place that changes the active adapter, so the registry's record and the adapter
the running server answers with never disagree.

Every change loads the adapter first (a bad one fails before anything is written),
then records it in the registry (``active.json``, atomically), then serves it, all
under one lock shared by the admin routes and the tuning-job thread.
"""

from __future__ import annotations

import threading

from assistant.generation.base import TextGenerator
from assistant.generation.registry import AdapterRegistry, model_hash


class AdapterSwitch:
    def __init__(self, registry: AdapterRegistry, generator: TextGenerator):
        self.registry, self.generator = registry, generator
        self._lock = threading.Lock()
        self._base_hash: str | None = None
        self._hashed = False

    def base_hash(self) -> str | None:
        """The served base model's hash (None for a remote backend: no check)."""
        if not self._hashed:
            model_dir = self.generator.model_dir
            self._base_hash = model_hash(model_dir) if model_dir else None
            self._hashed = True
        return self._base_hash

    def activate(self, name: str | None, *, force: bool = False) -> str | None:
        with self._lock:
            base_hash = self.base_hash()
            if name is not None:
                self.registry.check_activatable(name, base_hash, force=force)
                self.generator.load_adapter(name)
            self.registry.activate(name, base_model_hash=base_hash, force=force)
            self.generator.set_active_adapter(name)
            return name

    def rollback(self) -> str | None:
        with self._lock:
            previous = self.registry.previous()
            if previous is not None:
                self.generator.load_adapter(previous)
            self.registry.rollback()
            self.generator.set_active_adapter(previous)
            return previous

    def serve_recorded(self) -> str | None:
        """At start-up: serve what the registry records as active."""
        with self._lock:
            name = self.registry.active()
            self.generator.set_active_adapter(name)
            return name
