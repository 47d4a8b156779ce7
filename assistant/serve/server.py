"""The uvicorn server the service runs under, with the one limit uvicorn lacks: a
deadline on each request's head.

uvicorn (0.55, h11) times out only idle keep-alive connections (``timeout_keep_alive``,
armed after a response); a connection that opens and sends its request line and
headers a byte at a time is held for as long as the client likes, one slot per
socket. :class:`HeadDeadlineProtocol` closes a connection whose request head is not
complete ``header_timeout_s`` after its first byte (or, for a new connection, after
it opened). Bodies are not timed: a handler that reads one waits for it.

    uvicorn.Server(server_config(app, settings)).run()
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from assistant.serve.settings import ServiceSettings


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol; the client's state is ``IDLE`` until its whole request head has arrived."""

    header_timeout_s = 10.0
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_deadline is None and self.conn.their_state is h11.IDLE:  # the next request begins
            self._arm()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info("closed a connection that sent no request head in %.1f s", self.header_timeout_s)
            self.transport.close()


def server_config(app: Any, settings: ServiceSettings, **overrides: Any) -> uvicorn.Config:
    """uvicorn's settings for the service: its host and port, h11 with the head deadline."""
    protocol = type("HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"header_timeout_s": settings.header_timeout_s})
    # a stop waits for open requests this long, then the lifespan's close gives running
    # answers the same grace before it stops them
    options: dict[str, Any] = {"host": settings.host, "port": settings.port, "http": protocol,
                               "log_level": "warning", "timeout_graceful_shutdown": settings.shutdown_grace_s,
                               **overrides}
    return uvicorn.Config(app, **options)
