"""Prometheus metrics of one service instance (its own registry, so several
apps in one process, as in the tests, don't collide), and the ASGI middleware that
counts and times every request per route for ``/metrics``."""

from __future__ import annotations

import time
from typing import Any

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("assistant_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("assistant_request_seconds", "HTTP request latency by route", ["route"],
                                 registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.queue_depth = Gauge("assistant_generation_queue_depth", "requests waiting for generation",
                                 registry=self.registry)
        self.tokens = Counter("assistant_generated_tokens", "completion tokens generated", registry=self.registry)
        self.tokens_per_s = Gauge("assistant_generation_tokens_per_second", "tokens/s of the last generation",
                                  registry=self.registry)
        self.abstentions = Counter("assistant_abstentions", "answers replaced by 'not in the documents'",
                                   registry=self.registry)

    def observe_answer(self, result: dict[str, Any]) -> None:
        timings = result.get("timings", {})
        self.tokens.inc(timings.get("completion_tokens", 0))
        if timings.get("tokens_per_s"):
            self.tokens_per_s.set(timings["tokens_per_s"])
        if not result.get("grounded", False):
            self.abstentions.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetricsMiddleware(ASGIMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = time.perf_counter()
        status = {"code": 500}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, capture)
        finally:
            handler = scope.get("route_handler")
            route = next(iter(handler.paths), "unmatched") if handler is not None else "unmatched"
            metrics = scope["litestar_app"].state.metrics
            metrics.requests.labels(route=route, status=str(status["code"])).inc()
            metrics.latency.labels(route=route).observe(time.perf_counter() - started)
