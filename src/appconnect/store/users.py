"""Users and their CRM credentials; tokens are encrypted on the way in and decrypted on the way out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from appconnect.security.crypto import TokenCipher
from appconnect.store.db import write_transaction
from appconnect.store.sql import FastDatabase, from_json, sql
from appconnect.store.tables import call_logs, message_logs, users

if TYPE_CHECKING:
    from appconnect.store.user_cache import UserCache

_NOTIFY_CHANGE = text("SELECT pg_notify('appconnect_users', :user_id)")

_USER_COLUMNS = (
    "id, platform, hostname, rc_account_id, hashed_rc_extension_id, timezone_name, timezone_offset, "
    "access_token, refresh_token, token_expiry, session_revoked_at, tokens_valid_after, "
    "platform_additional_info, user_settings, account_scope"
)
# built from constants only: every value is a bound parameter
_GET_USER = sql(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?")  # noqa: S608


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def legacy_scope(user_id: str) -> str:
    """The scope of rows logged before scopes existed (migration 0003): they stay with their user."""
    return f"legacy:{user_id}"


async def adopt_legacy_rows(conn: Any, user_id: str, scope: str) -> None:
    """A user's first login with a CRM-verified scope takes their pre-scope log rows into it."""
    old = legacy_scope(user_id)
    await conn.execute(update(call_logs).where(call_logs.c.scope == old).values(scope=scope))
    await conn.execute(update(message_logs).where(message_logs.c.scope == old).values(scope=scope))


@dataclass(slots=True)
class UserRecord:
    id: str
    platform: str
    hostname: str = ""
    rc_account_id: str | None = None
    hashed_rc_extension_id: str | None = None
    timezone_name: str | None = None
    timezone_offset: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    token_expiry: datetime | None = None
    session_revoked: bool = False
    tokens_valid_after: datetime | None = None
    platform_additional_info: dict[str, Any] = field(default_factory=dict)
    user_settings: dict[str, Any] = field(default_factory=dict)
    account_scope: str | None = None


class UserStore:
    def __init__(
        self, engine: AsyncEngine, cipher: TokenCipher, fast: FastDatabase, cache: UserCache | None = None
    ) -> None:
        self._engine = engine
        self._cipher = cipher
        self._fast = fast
        self._cache = cache
        self._postgres = engine.dialect.name == "postgresql"

    async def _announce(self, conn: Any, user_id: str) -> None:
        """Inside the changing transaction: PostgreSQL delivers the notification when (and only if) it commits."""
        if self._postgres:
            await conn.execute(_NOTIFY_CHANGE, {"user_id": user_id})

    def _changed(self, user_id: str) -> None:
        """After the commit: this process's cache and (SQLite) the other workers' counters."""
        if self._cache is not None:
            self._cache.changed(user_id)

    def _record(self, row: Any) -> UserRecord:
        when = self._fast.when
        return UserRecord(
            id=row["id"],
            platform=row["platform"],
            hostname=row["hostname"] or "",
            rc_account_id=row["rc_account_id"],
            hashed_rc_extension_id=row["hashed_rc_extension_id"],
            timezone_name=row["timezone_name"],
            timezone_offset=row["timezone_offset"],
            access_token=self._cipher.decrypt(row["access_token"]),
            refresh_token=self._cipher.decrypt(row["refresh_token"]),
            token_expiry=when(row["token_expiry"]),
            session_revoked=row["session_revoked_at"] is not None,
            tokens_valid_after=when(row["tokens_valid_after"]),
            platform_additional_info=dict(from_json(row["platform_additional_info"]) or {}),
            user_settings=dict(from_json(row["user_settings"]) or {}),
            account_scope=row["account_scope"],
        )

    async def get(self, user_id: str, platform: str | None = None) -> UserRecord | None:
        """Every authenticated request reads its user: from this worker's cache while no process changed it,
        else one prepared statement, no transaction."""
        generation = None
        if self._cache is not None:
            generation, cached = self._cache.lookup(user_id)
            if cached is not None:
                return cached if platform is None or cached.platform == platform else None
        row = await self._fast.one(_GET_USER, user_id)
        if row is None:
            return None
        record = self._record(row)
        if self._cache is not None:
            self._cache.store(user_id, generation, record)
        return record if platform is None or record.platform == platform else None

    async def save_login(self, record: UserRecord) -> UserRecord:
        """Insert or update a user at login: credentials replaced, additional info merged, settings kept."""
        now = datetime.now(UTC)
        values = {
            "platform": record.platform,
            "hostname": record.hostname,
            "rc_account_id": record.rc_account_id,
            "hashed_rc_extension_id": record.hashed_rc_extension_id,
            "timezone_name": record.timezone_name,
            "timezone_offset": record.timezone_offset,
            "access_token": self._cipher.encrypt(record.access_token),
            "refresh_token": self._cipher.encrypt(record.refresh_token),
            "token_expiry": record.token_expiry,
            "session_revoked_at": None,  # a new login heals a revoked session
            "updated_at": now,
        }
        if record.account_scope is not None:
            values["account_scope"] = record.account_scope
        for _attempt in range(3):
            # Only the additional info is merged: the stored credentials are replaced, never decrypted, so a
            # login also heals a row whose tokens were encrypted with a key this server no longer has.
            async with self._engine.connect() as conn:
                existing = (
                    await conn.execute(
                        select(users.c.platform_additional_info, users.c.account_scope).where(
                            users.c.id == record.id
                        )
                    )
                ).first()
            if existing is not None:
                merged = {**(existing.platform_additional_info or {}), **record.platform_additional_info}
                async with write_transaction(self._engine) as conn:
                    await conn.execute(
                        update(users)
                        .where(users.c.id == record.id)
                        .values(platform_additional_info=merged, **values)
                    )
                    if existing.account_scope is None and record.account_scope is not None:
                        await adopt_legacy_rows(conn, record.id, record.account_scope)
                    await self._announce(conn, record.id)
                self._changed(record.id)
                break
            try:
                async with write_transaction(self._engine) as conn:
                    await conn.execute(
                        insert(users).values(
                            id=record.id,
                            platform_additional_info=record.platform_additional_info,
                            user_settings={},
                            created_at=now,
                            **values,
                        )
                    )
                    await self._announce(conn, record.id)
                self._changed(record.id)
                break
            except IntegrityError:
                continue
        else:  # pragma: no cover - three lost races in a row
            raise RuntimeError("could not save user")
        saved = await self.get(record.id)
        assert saved is not None
        return saved

    async def save_tokens(
        self,
        user_id: str,
        *,
        access_token: str | None,
        refresh_token: str | None,
        token_expiry: datetime | None,
    ) -> None:
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(
                    access_token=self._cipher.encrypt(access_token),
                    refresh_token=self._cipher.encrypt(refresh_token),
                    token_expiry=token_expiry,
                    updated_at=datetime.now(UTC),
                )
            )
            await self._announce(conn, user_id)
        self._changed(user_id)

    async def mark_revoked(self, user_id: str) -> None:
        """The CRM refused the refresh token: every later request answers 401 until the user logs in again."""
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(users).where(users.c.id == user_id).values(session_revoked_at=datetime.now(UTC))
            )
            await self._announce(conn, user_id)
        self._changed(user_id)

    async def clear_tokens(self, user_id: str) -> None:
        """Logout: the row stays (settings survive), the credentials go, and so do the session JWTs issued
        until now (to the millisecond, the precision of their `iat`)."""
        now = datetime.now(UTC)
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(
                    access_token=None,
                    refresh_token=None,
                    token_expiry=None,
                    tokens_valid_after=now.replace(microsecond=now.microsecond // 1000 * 1000),
                    updated_at=now,
                )
            )
            await self._announce(conn, user_id)
        self._changed(user_id)

    async def save_settings(self, user_id: str, settings: dict[str, Any]) -> None:
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(user_settings=settings, updated_at=datetime.now(UTC))
            )
            await self._announce(conn, user_id)
        self._changed(user_id)
