"""Managed auth: what an admin stores once for every user of a RingCentral account, encrypted at rest.

One row per (account, platform, data key); the row's values are a single Fernet token of their JSON, so neither
the field names nor the values are readable from the database alone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from appconnect.security.crypto import TokenCipher
from appconnect.store.sql import Database, sql

_GET = sql(
    "SELECT data, expires_at FROM managed_auth WHERE account_hash = ? AND platform = ? AND data_key = ?"
)
_LIST = sql(
    """SELECT data_key, data, expires_at FROM managed_auth
    WHERE account_hash = ? AND platform = ? AND data_key LIKE ? ORDER BY data_key"""
)
_PUT = sql(
    """INSERT INTO managed_auth (account_hash, platform, data_key, data, expires_at, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (account_hash, platform, data_key) DO UPDATE SET
    data = excluded.data, expires_at = excluded.expires_at, updated_at = excluded.updated_at"""
)
_DELETE = sql("DELETE FROM managed_auth WHERE account_hash = ? AND platform = ? AND data_key = ?")
#: expired rows (pending OAuth apps nobody completed) go in small batches on each write of an expiring one
_PURGE = sql(
    """DELETE FROM managed_auth WHERE (account_hash, platform, data_key) IN
    (SELECT account_hash, platform, data_key FROM managed_auth WHERE expires_at < ? LIMIT 100)"""
)

#: at most this many per-user rows are read for one admin page (a 500-seat company fits with room to spare)
MAX_LISTED = 5000


class ManagedAuthStore:
    """Encrypted JSON objects by (account hash, platform, data key); an expired row reads as absent."""

    def __init__(self, cipher: TokenCipher, db: Database) -> None:
        self._cipher = cipher
        self._db = db

    def _open(self, row: Any) -> dict[str, Any] | None:
        expires = self._db.when(row["expires_at"])
        if expires is not None and expires <= datetime.now(UTC):
            return None
        value = orjson.loads(self._cipher.decrypt(row["data"]) or "{}")
        return value if isinstance(value, dict) else {}

    async def get(self, account_hash: str, platform: str, data_key: str) -> dict[str, Any] | None:
        row = await self._db.one(_GET, account_hash, platform, data_key)
        return None if row is None else self._open(row)

    async def list(
        self, account_hash: str, platform: str, key_prefix: str
    ) -> list[tuple[str, dict[str, Any]]]:
        """Every live row whose data key starts with `key_prefix` (no LIKE wildcards in it)."""
        rows = await self._db.all(_LIST, account_hash, platform, key_prefix + "%")
        found: list[tuple[str, dict[str, Any]]] = []
        for row in rows[:MAX_LISTED]:
            value = self._open(row)
            if value is not None:
                found.append((str(row["data_key"]), value))
        return found

    async def put(
        self,
        account_hash: str,
        platform: str,
        data_key: str,
        value: dict[str, Any],
        *,
        expires_at: datetime | None = None,
    ) -> None:
        now = self._db.stamp(datetime.now(UTC))
        if expires_at is not None:
            await self._db.run(_PURGE, now)
        sealed = self._cipher.encrypt(orjson.dumps(value).decode())
        await self._db.run(
            _PUT, account_hash, platform, data_key, sealed, self._db.stamp(expires_at), now, now
        )

    async def delete(self, account_hash: str, platform: str, data_key: str) -> int:
        return await self._db.run(_DELETE, account_hash, platform, data_key)
