"""Opening and closing the service's resources: the index, the generator and
its queue, the key store and the answer records."""

from __future__ import annotations

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
    gen_settings = GenerationSettings.from_env()
    if generator is None:
        generator = make_generator(gen_settings)
    if queue is None:
        queue = GenerationQueue(generator, max_batch_size=gen_settings.max_batch_size,
                                queue_size=gen_settings.queue_size)
        owned.append(queue)
    index.search("warm up", k=1)  # loads the embedding model now, so /readyz means ready
    keys = KeyStore(settings.service_db)
    records = Records(settings.service_db)
    owned += [keys, records]

    def close_all() -> None:
        for resource in reversed(owned):
            resource.close()

    return {"index": index, "generator": generator, "queue": queue, "key_store": keys, "records": records,
            "answerer": Answerer(index, generator, queue, min_score=settings.min_score, records=records),
            "close_all": close_all}
