"""API keys with roles, stored hashed in the service's SQLite file.

A key is ``da_<id>_<secret>``: 32 random bytes of secret, so a plain SHA-256
is a sound hash at rest (a slow password hash guards guessable secrets; these
are not). Roles are ordered: reader (ask, search) < editor (ingest, delete,
feedback) < admin (tuning, adapters); a role may do what the roles below it do.

    assistant keys create --name ci --role editor --data-dir DIR
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

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
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("""CREATE TABLE IF NOT EXISTS api_keys (
            key_id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
            created REAL NOT NULL, revoked REAL)""")

    def create(self, name: str, role: str) -> tuple[ApiKey, str]:
        """A new key and its secret form, shown once (only the hash is kept)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        key_id = secrets.token_hex(4)
        token = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        created = time.time()
        self._conn.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
                           (key_id, name, role, _hash(token), created))
        return ApiKey(key_id, name, role, created, None), token

    def revoke(self, key_id: str) -> bool:
        cur = self._conn.execute("UPDATE api_keys SET revoked = ? WHERE key_id = ? AND revoked IS NULL",
                                 (time.time(), key_id))
        return cur.rowcount == 1

    def list(self) -> list[ApiKey]:
        rows = self._conn.execute("SELECT key_id, name, role, created, revoked FROM api_keys ORDER BY created")
        return [ApiKey(*r) for r in rows]

    def verify(self, token: str) -> ApiKey | None:
        """The live key for ``token``, or None."""
        if not token.startswith(PREFIX):
            return None
        row = self._conn.execute("SELECT key_id, name, role, created, revoked FROM api_keys WHERE hash = ?",
                                 (_hash(token),)).fetchone()
        if row is None or row[4] is not None:
            return None
        return ApiKey(*row)

    def close(self) -> None:
        self._conn.close()
