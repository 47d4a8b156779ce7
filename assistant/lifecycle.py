"""Opening and closing the service's resources: the index, the generator and
its queue, the key store, the answer records, the adapter registry and the
tuning-job runner."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from assistant.answering import Answerer
from assistant.keys import KeyStore
from assistant.records import Records
from assistant.settings import ServiceSettings


def open_resources(settings: ServiceSettings, *, index: Any | None = None, generator: Any | None = None,
                   queue: Any | None = None) -> dict[str, Any]:
    from assistant.generation import GenerationQueue, GenerationSettings, make_generator
    from indexer.index import Index

    owned: list[Any] = []
    if index is None:
        if not (settings.index_dir / "index.sqlite").is_file():
            raise ValueError(f"no index at {settings.index_dir}; ingest documents first: "
                             f"indexer ingest PATH --index {settings.index_dir}")
        index = Index.open(settings.index_dir)
        owned.append(index)
    from assistant.jobs import JobRunner, JobStore
    from assistant.registry import AdapterRegistry
    from assistant.switching import AdapterSwitch

    gen_settings = GenerationSettings.from_env()
    if gen_settings.adapters_dir is None:
        gen_settings = dataclasses.replace(gen_settings, adapters_dir=settings.data_dir / "adapters")
    if generator is None:
        generator = make_generator(gen_settings)
    generator_settings = getattr(generator, "settings", None)
    if generator_settings is not None and getattr(generator_settings, "adapters_dir", False) is None:
        # a generator made without a registry folder gets the service's, so tuned adapters load
        generator.settings = dataclasses.replace(generator_settings, adapters_dir=gen_settings.adapters_dir)
    registry = AdapterRegistry(getattr(generator.settings, "adapters_dir", None) if generator_settings is not None
                               else gen_settings.adapters_dir)
    switch = AdapterSwitch(registry, generator)
    if registry.active() is not None:
        try:
            switch.serve_recorded()
        except Exception as exc:  # noqa: BLE001 - serve with the base model rather than not at all
            logging.getLogger(__name__).error("could not load the active adapter %r (%s); serving the base model",
                                              registry.active(), exc)
    if queue is None:
        queue = GenerationQueue(generator, max_batch_size=gen_settings.max_batch_size,
                                queue_size=gen_settings.queue_size)
        owned.append(queue)
    index.search("warm up", k=1)  # loads the embedding model now, so /readyz means ready
    keys = KeyStore(settings.service_db)
    records = Records(settings.service_db)

    def activate_finished(spec: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        """A job's accepted adapter goes live here, in the server, not in the job's process."""
        if result.get("accepted") and spec.get("activate", True):
            try:
                switch.activate(result["adapter"])
                result["activated"] = True
            except Exception as exc:  # noqa: BLE001 - recorded with the job
                result["activation_error"] = str(exc)
        return result

    jobs = JobRunner(JobStore(settings.service_db), settings.data_dir / "jobs", on_done=activate_finished)
    owned += [keys, records, jobs]

    def close_all() -> None:
        for resource in reversed(owned):
            resource.close()

    return {"index": index, "generator": generator, "queue": queue, "key_store": keys, "records": records,
            "registry": registry, "jobs": jobs, "adapter_switch": switch,
            "answerer": Answerer(index, generator, queue, min_score=settings.min_score, records=records),
            "close_all": close_all}
