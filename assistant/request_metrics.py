"""ASGI middleware counting requests and timing them per route for /metrics."""

from __future__ import annotations

import time

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send


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
