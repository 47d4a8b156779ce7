"""Prometheus metrics of one service instance (its own registry, so several
apps in one process, as in the tests, don't collide)."""

from __future__ import annotations

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

    def observe_answer(self, result: dict) -> None:
        timings = result.get("timings", {})
        self.tokens.inc(timings.get("completion_tokens", 0))
        if timings.get("tokens_per_s"):
            self.tokens_per_s.set(timings["tokens_per_s"])
        if not result.get("grounded", False):
            self.abstentions.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
