"""The service's resources, opened together and closed in reverse: the index, the
generator and its queue, the key store, the answer records, the adapter registry
with the switch that changes the active adapter, the tuning-job runner, and the
answerer over them. ``assistant serve`` opens them in the app's lifespan;
``assistant ask`` opens them directly.

    with Resources.open(settings) as resources:
        result = asyncio.run(resources.answerer.ask(AskRequest("What is asthma?")))
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from assistant.generation.adapters import AdapterSwitch
from assistant.generation.backends import make_generator
from assistant.generation.base import GenerationSettings, TextGenerator
from assistant.generation.queue import GenerationQueue
from assistant.generation.registry import AdapterRegistry
from assistant.grounding.answerability import load_gates
from assistant.grounding.choice_head import load_heads
from assistant.grounding.answerer import Answerer
from assistant.grounding.verify import CrossEncoderVerifier, Verifier
from assistant.serve.auth import KeyStore
from assistant.serve.records import Records
from assistant.serve.settings import ServiceSettings
from assistant.settings import from_env
from assistant.tuning.jobs import JobRunner, JobStore
from indexer.index import Index

log = logging.getLogger(__name__)


def load_verifier(name: str) -> Verifier | None:
    """None for the default overlap verifier (the answerer builds it on the index's
    embedder), else the named cross-encoder, loaded now so a bad name fails at start-up."""
    if name == "overlap":
        return None
    try:
        return CrossEncoderVerifier(name)
    except Exception as exc:  # noqa: BLE001 - any load failure: say which setting to fix
        raise ValueError(f"cannot load the verifier {name!r} (ASSISTANT_VERIFIER): {exc}; "
                         "give a cross-encoder's Hugging Face id or local folder, or 'overlap'") from exc


def check_index(settings: ServiceSettings) -> None:
    """A clear error, before anything loads, when there is no index to serve."""
    if not (settings.index_dir / "index.sqlite").is_file():
        raise ValueError(f"no index at {settings.index_dir}; ingest documents first: "
                         f"indexer ingest PATH --index {settings.index_dir}")


@dataclass
class _GracefulClose:
    """Closes the generation queue giving running answers ``grace_s`` to finish, so a
    stop is bounded (it waited 3 min 13 s for a long batch before)."""

    queue: GenerationQueue
    grace_s: float

    def close(self) -> None:
        self.queue.close(timeout=30, grace_s=self.grace_s)


@dataclass
class Resources:
    index: Index
    generator: TextGenerator
    queue: GenerationQueue
    key_store: KeyStore
    records: Records
    registry: AdapterRegistry
    adapter_switch: AdapterSwitch
    jobs: JobRunner
    answerer: Answerer
    owned: list[Any] = field(default_factory=list)
    """What was opened here (not passed in), closed by :meth:`close` in reverse order."""

    @classmethod
    def open(cls, settings: ServiceSettings, *, index: Index | None = None, generator: TextGenerator | None = None,
             queue: GenerationQueue | None = None) -> Resources:
        """Everything the service needs; ``index``, ``generator`` and ``queue`` are made
        from the settings (the index folder; ``ASSISTANT_*`` generation settings) unless given."""
        assert settings.data_dir is not None
        owned: list[Any] = []
        if index is None:
            check_index(settings)
            index = Index.open(settings.index_dir)
            owned.append(index)
        gen_settings = from_env(GenerationSettings)
        if gen_settings.adapters_dir is None:
            gen_settings = dataclasses.replace(gen_settings, adapters_dir=settings.data_dir / "adapters")
        if generator is None:
            generator = make_generator(gen_settings)
        if generator.settings.adapters_dir is None:
            # a generator made without a registry folder gets the service's, so tuned adapters load
            generator.settings = dataclasses.replace(generator.settings, adapters_dir=gen_settings.adapters_dir)
        registry = AdapterRegistry(generator.settings.adapters_dir)  # type: ignore[arg-type]
        switch = AdapterSwitch(registry, generator)
        # a calibrator fitted for another model or embedder fails here, before anything else opens
        answering = [None, *registry.names()]  # the base model and every registered adapter
        gates = load_gates(index.directory, answering, model=generator.model_name, embedder=index.embedder.name,
                           max_hallucination=settings.max_hallucination)
        heads = load_heads(index.directory, answering, model=generator.model_name)
        if registry.active() is not None:
            try:
                switch.serve_recorded()
            except Exception as exc:  # noqa: BLE001 - serve with the base model rather than not at all
                log.error("could not load the active adapter %r (%s); serving the base model", registry.active(), exc)
        if queue is None:
            queue = GenerationQueue(generator, max_batch_size=gen_settings.max_batch_size,
                                    queue_size=gen_settings.queue_size, slice_tokens=gen_settings.slice_tokens)
            owned.append(_GracefulClose(queue, settings.shutdown_grace_s))
        index.search("warm up", k=1)  # loads the embedding model now, so /readyz means ready
        keys, records = KeyStore(settings.service_db), Records(settings.service_db)
        jobs = JobRunner(JobStore(settings.service_db), settings.data_dir / "jobs", adapter_switch=switch)
        owned += [keys, records, jobs]
        answerer = Answerer(index, generator, queue, min_score=settings.min_score, records=records,
                            verifier=load_verifier(settings.verifier), gates=gates,
                            choice_heads=heads, deadline_s=settings.answer_deadline_s)
        return cls(index, generator, queue, keys, records, registry, switch, jobs, answerer, owned)

    def close(self) -> None:
        for resource in reversed(self.owned):
            resource.close()
        self.owned.clear()

    def __enter__(self) -> Resources:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
