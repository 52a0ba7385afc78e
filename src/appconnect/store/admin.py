"""What a company's admin sets for everyone (per RingCentral account), and call notes cached for later logging."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from appconnect.security.crypto import TokenCipher
from appconnect.store.sql import Database, from_json, sql, to_json

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

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, account_hash: str) -> dict[str, Any] | None:
        row = await self._db.one(_GET_SETTINGS, account_hash)
        if row is None:
            return None
        value = from_json(row["user_settings"])
        return value if isinstance(value, dict) else {}

    async def put(self, account_hash: str, user_settings: dict[str, Any]) -> None:
        now = self._db.stamp(datetime.now(UTC))
        await self._db.run(_PUT_SETTINGS, account_hash, to_json(user_settings), now, now)


class CallNoteCache:
    """Notes typed during a call, kept (encrypted) for the account's server-side logging to merge later."""

    def __init__(self, cipher: TokenCipher, db: Database) -> None:
        self._cipher = cipher
        self._db = db

    async def put(self, scope: str, session_id: str, note: str, *, ttl_seconds: float) -> None:
        now = datetime.now(UTC)
        await self._db.run(_PURGE_NOTES, self._db.stamp(now))
        expires = self._db.stamp(now + timedelta(seconds=ttl_seconds))
        await self._db.run(_PUT_NOTE, scope, session_id, self._cipher.encrypt(note), expires)

    async def get(self, scope: str, session_id: str) -> str | None:
        """The note cached for this call in this account, unless it expired."""
        row = await self._db.one(_GET_NOTE, scope, session_id)
        if row is None:
            return None
        expires = self._db.when(row["expires_at"])
        if expires is not None and expires < datetime.now(UTC):
            return None
        return self._cipher.decrypt(row["note"])

    async def delete(self, scope: str, session_id: str) -> None:
        """The note was logged: it is not merged into anything again."""
        await self._db.run(_DELETE_NOTE, scope, session_id)


_GET_RC = sql(
    "SELECT access_token, refresh_token, token_expiry, server_logging FROM admin_ringcentral WHERE id = ?"
)
_PUT_RC_TOKENS = sql(
    """INSERT INTO admin_ringcentral (id, access_token, refresh_token, token_expiry, updated_at)
    VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET access_token = excluded.access_token,
    refresh_token = excluded.refresh_token, token_expiry = excluded.token_expiry, updated_at = excluded.updated_at"""
)
_PUT_RC_LOGGING = sql(
    """INSERT INTO admin_ringcentral (id, server_logging, updated_at) VALUES (?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET server_logging = excluded.server_logging, updated_at = excluded.updated_at"""
)


@dataclass(slots=True)
class AdminRcTokens:
    """An admin's RingCentral OAuth tokens (decrypted): only ever used to call RingCentral, never answered."""

    access_token: str
    refresh_token: str | None
    expiry: datetime | None


class AdminRingCentralStore:
    """Per RingCentral account (by its keyed hash): the admin's RingCentral tokens and the server-side logging
    settings, both encrypted at rest with the users' token keys."""

    def __init__(self, cipher: TokenCipher, db: Database) -> None:
        self._cipher = cipher
        self._db = db

    async def tokens(self, account_hash: str) -> AdminRcTokens | None:
        row = await self._db.one(_GET_RC, account_hash)
        access = self._cipher.decrypt(row["access_token"]) if row is not None else None
        if row is None or not access:
            return None
        return AdminRcTokens(
            access, self._cipher.decrypt(row["refresh_token"]), self._db.when(row["token_expiry"])
        )

    async def save_tokens(self, account_hash: str, tokens: AdminRcTokens | None) -> None:
        """Replace the account's tokens; None forgets them (RingCentral refused the refresh token)."""
        now = self._db.stamp(datetime.now(UTC))
        if tokens is None:
            await self._db.run(_PUT_RC_TOKENS, account_hash, None, None, None, now)
            return
        await self._db.run(
            _PUT_RC_TOKENS,
            account_hash,
            self._cipher.encrypt(tokens.access_token),
            self._cipher.encrypt(tokens.refresh_token),
            self._db.stamp(tokens.expiry),
            now,
        )

    async def logging_settings(self, account_hash: str) -> dict[str, Any]:
        row = await self._db.one(_GET_RC, account_hash)
        text = self._cipher.decrypt(row["server_logging"]) if row is not None else None
        value = from_json(text) if text else None
        return value if isinstance(value, dict) else {}

    async def save_logging_settings(self, account_hash: str, settings: dict[str, Any]) -> None:
        now = self._db.stamp(datetime.now(UTC))
        await self._db.run(_PUT_RC_LOGGING, account_hash, self._cipher.encrypt(to_json(settings)), now)
