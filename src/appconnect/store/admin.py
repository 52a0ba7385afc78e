"""What a company's admin sets for everyone (per RingCentral account), and call notes cached for later logging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from appconnect.security.crypto import TokenCipher
from appconnect.store.sql import FastDatabase, from_json, sql, to_json

_GET_SETTINGS = sql("SELECT user_settings FROM admin_configs WHERE id = ?")
_PUT_SETTINGS = sql(
    """INSERT INTO admin_configs (id, user_settings, created_at, updated_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET user_settings = excluded.user_settings, updated_at = excluded.updated_at"""
)

_PUT_NOTE = sql(
    """INSERT INTO call_note_cache (scope, session_id, note, expires_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (scope, session_id) DO UPDATE SET note = excluded.note, expires_at = excluded.expires_at"""
)
_DELETE_NOTE = sql("DELETE FROM call_note_cache WHERE scope = ? AND session_id = ?")
_GET_NOTE = sql("SELECT note, expires_at FROM call_note_cache WHERE scope = ? AND session_id = ?")
#: expired notes go in small batches on each write: the table stays bounded without a sweeper of its own
_PURGE_NOTES = sql(
    """DELETE FROM call_note_cache WHERE (scope, session_id) IN
    (SELECT scope, session_id FROM call_note_cache WHERE expires_at < ? LIMIT 100)"""
)


class AdminSettingsStore:
    """The admin's locked and pre-set user settings, one row per RingCentral account (by its keyed hash)."""

    def __init__(self, fast: FastDatabase) -> None:
        self._fast = fast

    async def get(self, account_hash: str) -> dict[str, Any] | None:
        row = await self._fast.one(_GET_SETTINGS, account_hash)
        if row is None:
            return None
        value = from_json(row["user_settings"])
        return value if isinstance(value, dict) else {}

    async def put(self, account_hash: str, user_settings: dict[str, Any]) -> None:
        now = self._fast.stamp(datetime.now(UTC))
        await self._fast.run(_PUT_SETTINGS, account_hash, to_json(user_settings), now, now)


class CallNoteCache:
    """Notes typed during a call, kept (encrypted) for the account's server-side logging to merge later."""

    def __init__(self, cipher: TokenCipher, fast: FastDatabase) -> None:
        self._cipher = cipher
        self._fast = fast

    async def put(self, scope: str, session_id: str, note: str, *, ttl_seconds: float) -> None:
        now = datetime.now(UTC)
        await self._fast.run(_PURGE_NOTES, self._fast.stamp(now))
        expires = self._fast.stamp(now + timedelta(seconds=ttl_seconds))
        await self._fast.run(_PUT_NOTE, scope, session_id, self._cipher.encrypt(note), expires)

    async def get(self, scope: str, session_id: str) -> str | None:
        """The note cached for this call in this account, unless it expired."""
        row = await self._fast.one(_GET_NOTE, scope, session_id)
        if row is None:
            return None
        expires = self._fast.when(row["expires_at"])
        if expires is not None and expires < datetime.now(UTC):
            return None
        return self._cipher.decrypt(row["note"])

    async def delete(self, scope: str, session_id: str) -> None:
        """The note was logged: it is not merged into anything again."""
        await self._fast.run(_DELETE_NOTE, scope, session_id)
