"""The HTTP service (Litestar): the app factory, its lifespan, and the health routes.

    assistant serve --index DIR --host 127.0.0.1 --port 8000

Routes (the generated OpenAPI schema is at ``/schema``), one module per resource:
answers (:mod:`.routes_answers`: ``POST /v1/ask``, ``POST /v1/chat/completions``),
documents (:mod:`.routes_documents`: ``GET /v1/search``, ``POST|GET /v1/documents``,
``GET /v1/ingest/{job_id}``, ``DELETE /v1/documents/{doc_id}``), feedback (:mod:`.routes_feedback`), adapters and
tuning jobs (:mod:`.routes_tuning`), and here ``GET /healthz | /readyz | /metrics``
(``/metrics`` wants a reader key unless ``ASSISTANT_METRICS_PUBLIC`` is set).

The lifespan opens the resources (:class:`.resources.Resources`) before the first
request and closes them after the last; they live on ``app.state`` and reach the
handlers through dependency injection (``Provide``), so a handler names what it needs
(``answerer: Answerer``) and never imports torch. Errors become JSON in one place
(:mod:`.errors`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, Response, get
from litestar.di import NamedDependency
from litestar.datastructures import State
from litestar.di import Provide
from litestar.static_files import create_static_files_router

from assistant.generation.base import TextGenerator
from assistant.generation.queue import GenerationQueue
from assistant.serve import routes_answers, routes_documents, routes_feedback, routes_tuning
from assistant.serve.auth import require_metrics_key
from assistant.serve.errors import error_response
from assistant.serve.index_writes import IndexWrites
from assistant.serve.ingest_jobs import IngestJobs
from assistant.serve.limits import reject_deep_json
from assistant.serve.metrics import RequestMetricsMiddleware, ServiceMetrics
from assistant.serve.rate_limit import RateLimiter
from assistant.serve.resources import Resources
from assistant.serve.settings import ServiceSettings
from indexer.index import Index

STATIC_DIR = Path(__file__).parent / "static"
INJECTED = ("settings", "metrics", "index_writes", "ingest_jobs", *(f.name for f in dataclasses.fields(Resources) if f.name != "owned"))
"""What handlers may ask for by parameter name: the settings, the metrics, the index's
write thread and every resource."""


@get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz")
async def readyz(state: State) -> Response:
    index, answerer, queue = state.get("index"), state.get("answerer"), state.get("queue")
    ready = index is not None and answerer is not None
    return Response({"ready": ready, "index": index is not None, "model": answerer is not None,
                     "index_writes_backlog": state["index_writes"].backlog,
                     "ingest_jobs_backlog": state["ingest_jobs"].backlog if "ingest_jobs" in state else None,
                     "generation": queue.stats() if queue is not None else None},
                    status_code=200 if ready else 503)


@get("/metrics", media_type="text/plain; version=0.0.4", guards=[require_metrics_key], opt={"role": "reader"})
async def metrics(metrics: NamedDependency[ServiceMetrics], queue: NamedDependency[GenerationQueue]) -> bytes:
    metrics.queue_depth.set(queue.depth)
    return metrics.render()


def _from_state(name: str) -> Callable[[State], Any]:
    def provide(state: State) -> Any:
        return state[name]

    return provide


def create_app(settings: ServiceSettings, *, index: Index | None = None, generator: TextGenerator | None = None,
               queue: GenerationQueue | None = None) -> Litestar:
    """The service. ``index``, ``generator`` and ``queue`` are made from the settings
    (the index folder; ``ASSISTANT_*`` generation settings) when the app starts, unless given."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # loading the model and warming the embedder take seconds: off the event loop
        resources = await asyncio.to_thread(Resources.open, settings, index=index, generator=generator, queue=queue)
        app.state.update({f.name: getattr(resources, f.name) for f in dataclasses.fields(Resources)})
        assert settings.data_dir is not None
        jobs = IngestJobs(settings.data_dir / "ingest", resources.index, settings.upload_dir, app.state["index_writes"])
        app.state["ingest_jobs"] = jobs
        jobs.resume()  # accepted before the last stop (or crash), not yet indexed
        try:
            yield
        finally:
            await asyncio.to_thread(app.state["index_writes"].close)  # before the index closes under it
            await asyncio.to_thread(resources.close)

    routes: list[Any] = [*routes_answers.ROUTES, *routes_documents.ROUTES, *routes_feedback.ROUTES,
                         *routes_tuning.ROUTES, healthz, readyz, metrics]
    if STATIC_DIR.is_dir():
        routes.append(create_static_files_router(path="/", directories=[STATIC_DIR], html_mode=True))
    state = State({"settings": settings, "metrics": ServiceMetrics(), "index_writes": IndexWrites(),
                   "limiter": RateLimiter(settings.rate_per_minute),
                   "auth_failures": RateLimiter(settings.auth_failures_per_minute)})
    return Litestar(
        route_handlers=routes, state=state, lifespan=[lifespan],
        dependencies={name: Provide(_from_state(name), sync_to_thread=False) for name in INJECTED},
        request_max_body_size=settings.max_body_bytes, exception_handlers={Exception: error_response},
        middleware=[RequestMetricsMiddleware()], before_request=reject_deep_json,
    )
