"""Users and their CRM credentials; tokens are encrypted on the way in and decrypted on the way out."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from appconnect.security.crypto import TokenCipher
from appconnect.store.sql import Database, Executor, IntegrityError, Statement, from_json, sql, to_json

log = logging.getLogger("appconnect.store")

if TYPE_CHECKING:
    from appconnect.store.user_cache import UserCache

_NOTIFY_CHANGE = sql("SELECT pg_notify('appconnect_users', ?)")
_LOGIN_STATE = sql("SELECT platform_additional_info, account_scope FROM users WHERE id = ?")
# a login replaces the credentials and heals a revoked session; the scope is set only when the CRM reported one
_LOGIN_UPDATE = sql(
    """UPDATE users SET platform = ?, hostname = ?, rc_account_id = ?, hashed_rc_extension_id = ?,
    timezone_name = ?, timezone_offset = ?, access_token = ?, refresh_token = ?, token_expiry = ?,
    session_revoked_at = NULL, updated_at = ?, platform_additional_info = ?,
    account_scope = COALESCE(?, account_scope) WHERE id = ?"""
)
#: a login whose CRM account differs from the stored user's: a different identity under the same id. Nothing of
#: the other account's user survives (settings, additional info) and its sessions end (`tokens_valid_after`).
_LOGIN_REPLACE = sql(
    """UPDATE users SET platform = ?, hostname = ?, rc_account_id = ?, hashed_rc_extension_id = ?,
    timezone_name = ?, timezone_offset = ?, access_token = ?, refresh_token = ?, token_expiry = ?,
    session_revoked_at = NULL, updated_at = ?, platform_additional_info = ?, account_scope = ?,
    user_settings = '{}', tokens_valid_after = ? WHERE id = ?"""
)
_LOGIN_INSERT = sql(
    """INSERT INTO users (platform, hostname, rc_account_id, hashed_rc_extension_id, timezone_name,
    timezone_offset, access_token, refresh_token, token_expiry, session_revoked_at, updated_at,
    platform_additional_info, account_scope, id, user_settings, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, '{}', ?)"""
)
_ADOPT_CALL_LOGS = sql("UPDATE call_logs SET scope = ? WHERE scope = ?")
_ADOPT_MESSAGE_LOGS = sql("UPDATE message_logs SET scope = ? WHERE scope = ?")
_SAVE_TOKENS = sql(
    "UPDATE users SET access_token = ?, refresh_token = ?, token_expiry = ?, updated_at = ? WHERE id = ?"
)
_MARK_REVOKED = sql("UPDATE users SET session_revoked_at = ?, updated_at = ? WHERE id = ?")
_CLEAR_TOKENS = sql(
    """UPDATE users SET access_token = NULL, refresh_token = NULL, token_expiry = NULL, tokens_valid_after = ?,
    updated_at = ? WHERE id = ?"""
)
_SAVE_SETTINGS = sql("UPDATE users SET user_settings = ?, updated_at = ? WHERE id = ?")
#: a CRM company's users: those whose scope (what the CRM reported at login) names it, and those without such a
#: scope (older logins, a hashed long scope), whose reported company id the caller checks
_COMPANY_CANDIDATES = sql(
    """SELECT id, platform_additional_info, account_scope FROM users WHERE platform = ?
    AND (account_scope LIKE ? OR account_scope IS NULL OR account_scope LIKE ?)"""
)
_DELETE_USER = sql("DELETE FROM users WHERE id = ? AND platform = ?")

_USER_COLUMNS = (
    "id, platform, hostname, rc_account_id, hashed_rc_extension_id, timezone_name, timezone_offset, "
    "access_token, refresh_token, token_expiry, session_revoked_at, tokens_valid_after, "
    "platform_additional_info, user_settings, account_scope"
)
# built from constants only: every value is a bound parameter
_GET_USER = sql(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?")  # noqa: S608
#: The user and, in the same round trip, one cached row of their account (a lookup's cached answer): joined on
#: the stored scope, so it can only be the user's own account's row.
_GET_USER_WITH_DATA = sql(
    f"SELECT {', '.join('u.' + c.strip() for c in _USER_COLUMNS.split(','))}, "  # noqa: S608
    "a.data AS companion_data, a.updated_at AS companion_updated_at "
    "FROM users u LEFT JOIN account_data a "
    "ON a.account_id = u.account_scope AND a.platform = ? AND a.data_key = ? WHERE u.id = ?"
)


#: How many parameters the gate of `user_and_write` takes: the user id, the platform (NULL: any) and the first
#: `tokens_valid_after` that ends the caller's session (NULL: any stored logout time does).
_GATE_PARAMETERS = 3


def user_and_write(write: str) -> Statement:
    """A PostgreSQL statement that reads a user (the columns `get` reads) and, in the same round trip, runs
    `write` for that user if the gate admits them.

    The gate is what `active_user` checks, as far as SQL can tell (credentials present, the platform when one is
    given, a session not ended by a later logout), plus a stored scope: a legacy user without one keeps the
    separate write. `write` is an INSERT taking its row FROM `admitted` (the user, or no row when the gate is
    closed), with `?` for its own parameters (cast where PostgreSQL cannot infer a type), RETURNING one column
    named `written`. The statement returns the user's columns, `gate_open` and `written` (NULL when the write
    made no row). SQLite has no data-modifying WITH: this statement is never run there.
    """
    counter = itertools.count(_GATE_PARAMETERS + 1)
    numbered = re.sub(r"\?", lambda _m: f"${next(counter)}", write)
    # built from constants only: every value is a bound parameter
    text = " ".join(
        f"""WITH u AS (SELECT {_USER_COLUMNS} FROM users WHERE id = $1),
        admitted AS (SELECT * FROM u WHERE access_token IS NOT NULL AND access_token <> ''
            AND account_scope IS NOT NULL AND ($2::varchar IS NULL OR platform = $2::varchar)
            AND (tokens_valid_after IS NULL OR tokens_valid_after < $3::timestamptz)),
        w AS ({numbered})
        SELECT u.*, EXISTS (SELECT 1 FROM admitted) AS gate_open, w.written
        FROM u LEFT JOIN w ON true""".split()  # noqa: S608
    )
    # the SQLite text is the same: a syntax error there, should it ever be run
    return Statement(sqlite=text, postgres=text)


def sessions_end(now: datetime) -> datetime:
    """The `tokens_valid_after` that ends every session JWT issued up to `now`: the next whole millisecond.

    `iat` keeps milliseconds, so a token issued in the same millisecond as the logout (a login and a logout
    within one millisecond) must end too; a login after the logout signs its token at or past this value
    (`session_issued_at`), never before it.
    """
    return now.replace(microsecond=now.microsecond // 1000 * 1000) + timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class GatedWrite:
    """A write to run in the statement that reads its user (`UserStore.get_with_write`), built by the store
    that owns the rows."""

    #: from `user_and_write`
    statement: Statement
    #: the write's own parameters, in the order of its `?`
    args: tuple[Any, ...]
    #: takes back the row the write made (given its `written` value) for a user the caller refuses after all
    undo: Callable[[Any], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Written:
    """A gated write ran: `value` is its `written` column, None when it made no row (a conflict, say)."""

    value: Any


class NotRead:
    """The companion row was not read with the user (the user came from the cache or has no stored scope)."""


NOT_READ = NotRead()


@dataclass(frozen=True, slots=True)
class AccountRow:
    """An `account_data` row read together with its user: None fields when the account has no such row."""

    data: Any
    updated_at: Any


def legacy_scope(user_id: str) -> str:
    """The scope of rows logged before scopes existed (migration 0003): they stay with their user."""
    return f"legacy:{user_id}"


async def adopt_legacy_rows(tx: Executor, user_id: str, scope: str) -> None:
    """A user's first login with a CRM-verified scope takes their pre-scope log rows into it."""
    old = legacy_scope(user_id)
    await tx.run(_ADOPT_CALL_LOGS, scope, old)
    await tx.run(_ADOPT_MESSAGE_LOGS, scope, old)


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


def _on_platform(record: UserRecord | None, platform: str | None) -> UserRecord | None:
    """The user when on `platform` (any platform when None)."""
    return record if record is not None and (platform is None or record.platform == platform) else None


class UserStore:
    def __init__(self, cipher: TokenCipher, db: Database, cache: UserCache | None = None) -> None:
        self._cipher = cipher
        self._db = db
        self._cache = cache
        self._postgres = db.dialect == "postgresql"

    async def _announce(self, tx: Executor, user_id: str) -> None:
        """Inside the changing transaction: PostgreSQL delivers the notification when (and only if) it commits."""
        if self._postgres:
            await tx.one(_NOTIFY_CHANGE, user_id)

    async def _update(self, statement: Any, user_id: str, *args: Any) -> None:
        """One change to one user: the statement (whose last parameter is the user id), announced."""
        async with self._db.transaction() as tx:
            await tx.run(statement, *args, user_id)
            await self._announce(tx, user_id)
        self._changed(user_id)

    def _changed(self, user_id: str) -> None:
        """After the commit: this process's cache and (SQLite) the other workers' counters."""
        if self._cache is not None:
            self._cache.changed(user_id)

    def _record(self, row: Any) -> UserRecord:
        when = self._db.when
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

    async def get(
        self, user_id: str, platform: str | None = None, *, fresh: bool = False
    ) -> UserRecord | None:
        """Every authenticated request reads its user: from this worker's cache while no process changed it,
        else one prepared statement, no transaction. `fresh`: from the database whatever the cache holds (under
        the refresh lock, where a notification still on its way must not make a second refresh)."""
        record, _row = await self._read(user_id, _GET_USER, (user_id,), fresh=fresh)
        return _on_platform(record, platform)

    async def get_with_account_data(
        self, user_id: str, platform: str, data_key: str
    ) -> tuple[UserRecord | None, AccountRow | NotRead]:
        """`get(user_id, platform)` plus the account's `data_key` row of `platform`, in one statement when the user
        is not served from the cache (a lookup then costs one round trip instead of two)."""
        record, row = await self._read(user_id, _GET_USER_WITH_DATA, (platform, data_key, user_id))
        if record is None or record.platform != platform:
            return None, NOT_READ
        if row is None or record.account_scope is None:
            return record, NOT_READ
        return record, AccountRow(row["companion_data"], row["companion_updated_at"])

    async def get_with_write(
        self, user_id: str, platform: str | None, valid_before: datetime | None, write: GatedWrite
    ) -> tuple[UserRecord | None, Written | None]:
        """`get(user_id, platform)` and, in the same statement (PostgreSQL), `write` for a user the gate of
        `user_and_write` admits: the first write of a request then costs no round trip of its own.

        `valid_before`: the first `tokens_valid_after` that ends the caller's session. Returns `Written` when
        the write ran, None when it did not (the user came from the cache, the database is SQLite, or the gate
        refused the user): the caller then writes on its own if its checks accept the user. Those checks stay
        the authority; should they refuse a user the write ran for, the caller undoes it (`write.undo`).
        """
        if not self._postgres:
            return await self.get(user_id, platform), None
        generation = None
        if self._cache is not None:
            generation, cached = self._cache.lookup(user_id)
            if cached is not None:
                return _on_platform(cached, platform), None
        row = await self._db.write(write.statement, user_id, platform, valid_before, *write.args)
        if row is None:
            return None, None
        written = Written(row["written"]) if row["gate_open"] else None
        try:
            record = self._keep(user_id, generation, row)
        except Exception:
            # a row that cannot be read (credentials under a key this server lacks): nobody will use the write
            if written is not None and written.value is not None:
                await write.undo(written.value)
            raise
        return _on_platform(record, platform), written

    async def _read(
        self, user_id: str, statement: Any, args: tuple[Any, ...], *, fresh: bool = False
    ) -> tuple[UserRecord | None, Any]:
        """The user from the cache (and no row), or from `statement` (and its row, the user then cached)."""
        generation = None
        if self._cache is not None and not fresh:
            generation, cached = self._cache.lookup(user_id)
            if cached is not None:
                return cached, None
        row = await self._db.one(statement, *args)
        if row is None:
            return None, None
        return self._keep(user_id, generation, row), row

    def _keep(self, user_id: str, generation: int | None, row: Any) -> UserRecord:
        """The user of a row just read, remembered in this worker's cache."""
        record = self._record(row)
        if self._cache is not None:
            self._cache.store(user_id, generation, record)
        return record

    async def save_login(self, record: UserRecord) -> UserRecord:
        """Insert or update a user at login: credentials replaced, additional info merged, settings kept."""
        now = self._db.stamp(datetime.now(UTC))
        # Only the additional info is merged: the stored credentials are replaced, never decrypted, so a login
        # also heals a row whose tokens were encrypted with a key this server no longer has.
        common = (
            record.platform,
            record.hostname,
            record.rc_account_id,
            record.hashed_rc_extension_id,
            record.timezone_name,
            record.timezone_offset,
            self._cipher.encrypt(record.access_token),
            self._cipher.encrypt(record.refresh_token),
            self._db.stamp(record.token_expiry),
            now,
        )
        for _attempt in range(3):
            existing = await self._db.one(_LOGIN_STATE, record.id)
            if existing is not None:
                other_account = existing["account_scope"] not in (None, record.account_scope) and (
                    record.account_scope is not None
                )
                async with self._db.transaction() as tx:
                    if other_account:
                        log.warning(
                            "login for user %s comes from another CRM account: earlier sessions end",
                            record.id,
                        )
                        await tx.run(
                            _LOGIN_REPLACE,
                            *common,
                            to_json(record.platform_additional_info),
                            record.account_scope,
                            self._db.stamp(sessions_end(datetime.now(UTC))),
                            record.id,
                        )
                    else:
                        merged = {
                            **(from_json(existing["platform_additional_info"]) or {}),
                            **record.platform_additional_info,
                        }
                        await tx.run(_LOGIN_UPDATE, *common, to_json(merged), record.account_scope, record.id)
                    if existing["account_scope"] is None and record.account_scope is not None:
                        await adopt_legacy_rows(tx, record.id, record.account_scope)
                    await self._announce(tx, record.id)
                self._changed(record.id)
                break
            try:
                async with self._db.transaction() as tx:
                    await tx.run(
                        _LOGIN_INSERT,
                        *common,
                        to_json(record.platform_additional_info),
                        record.account_scope,
                        record.id,
                        now,
                    )
                    await self._announce(tx, record.id)
                self._changed(record.id)
                break
            except IntegrityError:
                continue  # a concurrent first login inserted the row: update it instead
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
        await self._update(
            _SAVE_TOKENS,
            user_id,
            self._cipher.encrypt(access_token),
            self._cipher.encrypt(refresh_token),
            self._db.stamp(token_expiry),
            self._db.stamp(datetime.now(UTC)),
        )

    async def mark_revoked(self, user_id: str) -> None:
        """The CRM refused the refresh token: every later request answers 401 until the user logs in again."""
        now = self._db.stamp(datetime.now(UTC))
        await self._update(_MARK_REVOKED, user_id, now, now)

    async def clear_tokens(self, user_id: str) -> None:
        """Logout: the row stays (settings survive), the credentials go, and so do the session JWTs issued
        until now (to the millisecond, the precision of their `iat`)."""
        now = datetime.now(UTC)
        await self._update(_CLEAR_TOKENS, user_id, self._db.stamp(sessions_end(now)), self._db.stamp(now))

    async def save_settings(self, user_id: str, settings: dict[str, Any]) -> None:
        await self._update(_SAVE_SETTINGS, user_id, to_json(settings), self._db.stamp(datetime.now(UTC)))

    async def delete_company(self, platform: str, company_id: str) -> int:
        """Remove every user of one CRM company (the CRM's app was uninstalled there): their rows, with their
        tokens; their sessions end because their user is gone. Returns how many were removed."""
        if not company_id.isalnum():
            raise ValueError("a company id is letters and digits")
        suffix = f"|account:{company_id}"
        rows = await self._db.all(
            _COMPANY_CANDIDATES, platform, f"{platform}|%{suffix}", f"{platform}|sha256:%"
        )
        doomed = []
        for row in rows:
            scope = row["account_scope"] or ""
            info = from_json(row["platform_additional_info"]) or {}
            reported = info.get("companyId") if isinstance(info, dict) else None
            if scope.endswith(suffix) or (reported is not None and str(reported) == company_id):
                doomed.append(row["id"])
        if not doomed:
            return 0
        async with self._db.transaction() as tx:
            for user_id in doomed:
                await tx.run(_DELETE_USER, user_id, platform)
                await self._announce(tx, user_id)
        for user_id in doomed:
            self._changed(user_id)
        return len(doomed)
