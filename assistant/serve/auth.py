"""Who may call what: API keys with roles, stored hashed in the service's SQLite file,
and the route guard that checks them (then the caller's rate limit).

A key is ``da_<id>_<secret>``: 32 random bytes of secret, so a plain SHA-256
is a sound hash at rest (a slow password hash guards guessable secrets; these
are not). Roles are ordered: reader (ask, search) < editor (ingest, delete,
feedback) < admin (tuning, adapters); a role may do what the roles below it do.

    assistant keys create --name ci --role editor --data-dir DIR
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from assistant.serve.errors import TooManyRequests

ROLES = ("reader", "editor", "admin")
PREFIX = "da_"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    role: str
    created: float
    revoked: float | None


def role_allows(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """One short-lived connection per call: the service runs for weeks while
    ``assistant keys`` changes the file from other processes, and a long-lived
    connection was seen to keep answering from a stale snapshot after another
    process had opened and closed the file (a revoked key still verified)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            conn.execute("""CREATE TABLE IF NOT EXISTS api_keys (
                key_id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
                created REAL NOT NULL, revoked REAL)""")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        try:
            yield conn
        finally:
            conn.close()

    def create(self, name: str, role: str) -> tuple[ApiKey, str]:
        """A new key and its secret form, shown once (only the hash is kept)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        key_id = secrets.token_hex(4)
        token = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        created = time.time()
        with self._connect() as conn:
            conn.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)", (key_id, name, role, _hash(token), created))
        return ApiKey(key_id, name, role, created, None), token

    def revoke(self, key_id: str) -> bool:
        with self._connect() as conn:
            cur = conn.execute("UPDATE api_keys SET revoked = ? WHERE key_id = ? AND revoked IS NULL",
                               (time.time(), key_id))
            return cur.rowcount == 1

    def list(self) -> list[ApiKey]:
        with self._connect() as conn:
            rows = conn.execute("SELECT key_id, name, role, created, revoked FROM api_keys ORDER BY created").fetchall()
        return [ApiKey(*r) for r in rows]

    def verify(self, token: str) -> ApiKey | None:
        """The live key for ``token``, or None."""
        if not token.startswith(PREFIX):
            return None
        with self._connect() as conn:
            rows = conn.execute("SELECT key_id, name, role, created, revoked FROM api_keys WHERE hash = ?",
                                (_hash(token),)).fetchall()
        if not rows or rows[0][4] is not None:
            return None
        return ApiKey(*rows[0])

    def close(self) -> None:
        """Nothing to release: connections are per call."""


def _token(connection: ASGIConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return connection.headers.get("x-api-key")


def require_role(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Guard: the route's ``opt["role"]`` against the caller's key; then the rate limit.

    Wrong keys come out of a per-address budget (``auth_failures_per_minute``): once it is
    spent, every request with a key from that address is a 429 until it refills, so keys
    cannot be guessed at the speed of the server."""
    state = connection.app.state
    settings = state.settings
    caller = connection.client.host if connection.client else "unknown"
    if settings.auth:
        token = _token(connection)
        if not token:
            raise NotAuthorizedException(detail="missing API key: send 'Authorization: Bearer <key>'")
        wait = state.auth_failures.wait(caller)
        if wait > 0:
            raise TooManyRequests(f"more than {settings.auth_failures_per_minute} wrong API keys a minute from "
                                  "this address; retry later", wait)
        key = state.key_store.verify(token)
        if key is None:
            state.auth_failures.acquire(caller)
            raise NotAuthorizedException(detail="unknown or revoked API key")
        needed = handler.opt.get("role", "reader")
        if not role_allows(key.role, needed):
            raise PermissionDeniedException(detail=f"this route needs the {needed} role; the key has {key.role}")
        connection.scope["state"]["key_id"] = key.key_id
        caller = key.key_id
    wait = state.limiter.acquire(caller)
    if wait > 0:
        raise TooManyRequests(f"rate limit of {settings.rate_per_minute} requests per minute reached", wait)


def require_metrics_key(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Guard of ``/metrics``: a reader key, unless ``metrics_public`` is set."""
    if not connection.app.state.settings.metrics_public:
        require_role(connection, handler)
