"""Call-log rows, one per tenant scope, session and agent identity.

Life of a row: `pending` (reserved before the CRM is called) -> `done` (the CRM's log id is known). When the CRM
could not take the log the row keeps the request (encrypted) as `queued` (the CRM said no: safe to create
again) or `unknown` (the create was sent but no answer came: ask the CRM before creating again); the retrier
or the client's own retry takes such a row over. A `pending` row older than the stale window belonged to a
request that died (kill -9, database down) and is taken over too, as `unknown`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from appconnect.security.crypto import TokenCipher
from appconnect.store.sql import Database, Statement, sql
from appconnect.store.users import GatedWrite, user_and_write

PENDING = "pending"
DONE = "done"
QUEUED = "queued"
UNKNOWN = "unknown"
#: the CRM refused the kept log for good, or its earlier outcome cannot be checked (the user was told to look
#: in the CRM first); only an explicit client retry takes it over
FAILED = "failed"
#: statuses a new attempt may take over at once (no request is working on them)
PARKED = (QUEUED, UNKNOWN, FAILED)


@dataclass(frozen=True, slots=True)
class ExtensionIdentity:
    """Which agent logged the call: a transferred call may be logged once per agent."""

    extension_number: str = ""
    hashed_extension_id: str = ""


@dataclass(slots=True)
class CallLogRow:
    pk: int
    scope: str
    session_id: str
    extension_number: str
    hashed_extension_id: str
    call_id: str
    platform: str
    user_id: str
    contact_id: str | None
    third_party_log_id: str | None
    status: str
    updated_at: datetime | None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class NewCallLog:
    """What a reservation stores: the session, the agent identity, the chosen contact and the request."""

    scope: str
    session_id: str
    identity: ExtensionIdentity
    call_id: str
    platform: str
    user_id: str
    contact_id: str
    #: the request body, kept (encrypted) so the retrier can deliver it after a crash
    payload: str | None = None


class Reservation(Enum):
    RESERVED = "reserved"
    EXISTS = "exists"


@dataclass(frozen=True, slots=True)
class Claim:
    """A row this request now works on; `must_check` when an earlier create may have reached the CRM."""

    pk: int
    must_check: bool
    attempts: int = 0
    #: the row was kept after an earlier attempt (a CRM error): worth a look in the CRM when one is possible
    retried: bool = False
    #: when an earlier create went unanswered (status `unknown`): the CRM may still be carrying it out for a while
    unanswered_at: datetime | None = None


def new_claim(pk: Any) -> Claim | None:
    """The claim on a row just reserved (`pk`), None when nothing was reserved."""
    return Claim(int(pk), must_check=False) if pk is not None else None


_ROW_COLUMNS = (
    "pk, scope, session_id, extension_number, hashed_extension_id, call_id, platform, user_id, contact_id, "
    "third_party_log_id, status, updated_at, attempts"
)
_LEGACY = "(hashed_extension_id = '' OR hashed_extension_id IS NULL)"
_find_statements: dict[tuple[int, str, bool], Statement] = {}


def _identity_of(identity: ExtensionIdentity) -> tuple[str, list[str]]:
    """The shape of the contract's identity lookup for this identity, and its parameters in order."""
    if identity.hashed_extension_id:
        if identity.extension_number:
            return "hashed+ext", [identity.hashed_extension_id, identity.extension_number]
        return "hashed", [identity.hashed_extension_id]
    if identity.extension_number:
        return "ext", [identity.extension_number]
    return "none", []


def _identity_sql(shape: str) -> str:
    """The contract's lookup: exact hash, or a legacy row of the same extension, or a legacy empty row."""
    if shape == "hashed":
        return f" AND (hashed_extension_id = ? OR (extension_number = '' AND {_LEGACY}))"
    if shape == "hashed+ext":
        return (
            f" AND (hashed_extension_id = ? OR (extension_number = '' AND {_LEGACY})"
            f" OR (extension_number = ? AND {_LEGACY}))"
        )
    if shape == "ext":
        return " AND extension_number = ?"
    return ""


def _find_statement(
    sessions: int, identity: ExtensionIdentity, include_pending: bool
) -> tuple[Statement, list[str]]:
    """The lookup for `sessions` session ids and this kind of identity (built once per shape), and the
    identity's parameters in placeholder order."""
    shape, args = _identity_of(identity)
    key = (sessions, shape, include_pending)
    statement = _find_statements.get(key)
    if statement is None:
        # built from constants only: every value is a bound parameter
        placeholders = ", ".join("?" * sessions)
        text = f"SELECT {_ROW_COLUMNS} FROM call_logs WHERE scope = ? AND session_id IN ({placeholders})"  # noqa: S608
        text += _identity_sql(shape)
        if not include_pending:
            text += " AND status = 'done'"
        statement = _find_statements[key] = sql(text)
    return statement, args


_reserve_new_statements: dict[str, Statement] = {}
# (column, PostgreSQL type) of a new reservation's values; SQLite takes them untyped
_NEW_ROW = (
    ("scope", "varchar"),
    ("session_id", "varchar"),
    ("extension_number", "varchar"),
    ("hashed_extension_id", "varchar"),
    ("call_id", "varchar"),
    ("platform", "varchar"),
    ("user_id", "varchar"),
    ("contact_id", "varchar"),
    ("payload", "text"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)


def _reserve_sql(values: list[str], source: str, scope: str, lookup: str) -> str:
    """Insert a `pending` row of `values` (taken FROM `source`, if any) unless a row of `scope` answers the
    contract's lookup for this session and identity (a legacy row included)."""
    columns = ", ".join(name for name, _type in _NEW_ROW)
    # built from constants only: every value is a bound parameter
    return " ".join(
        f"""INSERT INTO call_logs ({columns}, status, attempts)
        SELECT {", ".join(values)}, 'pending', 0{source}
        WHERE NOT EXISTS (SELECT 1 FROM call_logs WHERE scope = {scope} AND session_id = ?{lookup})
        ON CONFLICT (scope, session_id, extension_number, hashed_extension_id) DO NOTHING""".split()  # noqa: S608
    )


def _reserve_new_statement(shape: str) -> Statement:
    """A new call reserved in one statement: the row, unless any row already answers for it."""
    statement = _reserve_new_statements.get(shape)
    if statement is None:
        lookup = _identity_sql(shape)
        sqlite = _reserve_sql(["?"] * len(_NEW_ROW), "", "?", lookup) + " RETURNING pk"
        # PostgreSQL cannot infer the types of parameters in a SELECT list: cast each one
        typed = [f"?::{kind}" for _name, kind in _NEW_ROW]
        counter = iter(range(1, 100))
        postgres = re.sub(
            r"\?", lambda _m: f"${next(counter)}", _reserve_sql(typed, "", "?", lookup) + " RETURNING pk"
        )
        statement = _reserve_new_statements[shape] = Statement(sqlite=sqlite, postgres=postgres)
    return statement


_reserve_for_user_statements: dict[str, Statement] = {}
#: the columns of a new reservation that come from the logging user's row (`admitted`) when it is reserved in
#: the user's read
_FROM_USER = {"scope": "admitted.account_scope", "platform": "admitted.platform", "user_id": "admitted.id"}


def _reserve_for_user_statement(shape: str) -> Statement:
    """`_reserve_new_statement` run in the read of the logging user (PostgreSQL only): the scope, platform and
    user id are the user's own. Written: the reserved row's pk."""
    statement = _reserve_for_user_statements.get(shape)
    if statement is None:
        values = [_FROM_USER.get(name, f"?::{kind}") for name, kind in _NEW_ROW]
        write = _reserve_sql(values, " FROM admitted", "admitted.account_scope", _identity_sql(shape))
        statement = _reserve_for_user_statements[shape] = user_and_write(write + " RETURNING pk AS written")
    return statement


#: the compare-and-set of a take-over: a parked row in the status it was read in, or an abandoned `pending` one
_TAKE_OVER_PARKED = sql(
    """UPDATE call_logs SET status = 'pending', updated_at = ?, user_id = COALESCE(?, user_id),
    contact_id = COALESCE(?, contact_id), payload = COALESCE(?, payload) WHERE pk = ? AND status = ?"""
)
_TAKE_OVER_ABANDONED = sql(
    """UPDATE call_logs SET status = 'pending', updated_at = ?, user_id = COALESCE(?, user_id),
    contact_id = COALESCE(?, contact_id), payload = COALESCE(?, payload)
    WHERE pk = ? AND status = 'pending' AND updated_at < ?"""
)
_RELEASE = sql("DELETE FROM call_logs WHERE pk = ? AND status = 'pending'")
_PARK = sql(
    """UPDATE call_logs SET status = ?, attempts = ?, next_attempt_at = ?, updated_at = ?,
    payload = COALESCE(?, payload) WHERE pk = ? AND status = 'pending'"""
)
_DUE = sql(
    f"""SELECT {_ROW_COLUMNS} FROM call_logs WHERE payload IS NOT NULL AND (
    (status IN ('queued', 'unknown') AND next_attempt_at <= ?) OR (status = 'pending' AND updated_at < ?))
    ORDER BY pk LIMIT ?"""  # noqa: S608 - constants only
)
_PAYLOAD = sql("SELECT payload FROM call_logs WHERE pk = ?")
_COMPLETE = sql(
    """UPDATE call_logs SET third_party_log_id = ?, status = 'done', payload = NULL, next_attempt_at = NULL,
    updated_at = ? WHERE pk = ?"""
)


def _rank(row: CallLogRow, identity: ExtensionIdentity) -> int:
    if identity.hashed_extension_id and row.hashed_extension_id == identity.hashed_extension_id:
        return 0
    if identity.extension_number and row.extension_number == identity.extension_number:
        return 1
    return 2


class CallLogStore:
    def __init__(self, cipher: TokenCipher, db: Database) -> None:
        self._cipher = cipher
        self._db = db

    def _row_of(self, row: Any) -> CallLogRow:
        return CallLogRow(
            pk=row["pk"],
            scope=row["scope"],
            session_id=row["session_id"],
            extension_number=row["extension_number"],
            hashed_extension_id=row["hashed_extension_id"],
            call_id=row["call_id"],
            platform=row["platform"],
            user_id=row["user_id"],
            contact_id=row["contact_id"],
            third_party_log_id=row["third_party_log_id"],
            status=row["status"],
            updated_at=self._db.when(row["updated_at"]),
            attempts=row["attempts"] or 0,
        )

    async def find(
        self,
        scope: str,
        session_ids: list[str],
        identity: ExtensionIdentity,
        *,
        include_pending: bool = False,
    ) -> dict[str, CallLogRow]:
        """The best-matching row per session id, within the caller's scope only."""
        if not session_ids:
            return {}
        statement, identity_args = _find_statement(len(session_ids), identity, include_pending)
        found = await self._db.all(statement, scope, *session_ids, *identity_args)
        rows = [self._row_of(r) for r in found]
        best: dict[str, CallLogRow] = {}
        for row in sorted(rows, key=lambda r: (r.status != DONE, _rank(r, identity))):
            best.setdefault(row.session_id, row)
        return best

    async def reserve_new(self, new: NewCallLog) -> Claim | None:
        """Reserve a session nobody logged yet, in one statement; None when any row already answers for it
        (then `find` and `reserve` decide what to do with that row)."""
        shape, identity_args = _identity_of(new.identity)
        now = self._db.stamp(datetime.now(UTC))
        row = await self._db.write(
            _reserve_new_statement(shape),
            new.scope,
            new.session_id,
            new.identity.extension_number,
            new.identity.hashed_extension_id,
            new.call_id,
            new.platform,
            new.user_id,
            new.contact_id,
            self._cipher.encrypt(new.payload),
            now,
            now,
            new.scope,
            new.session_id,
            *identity_args,
        )
        return new_claim(row["pk"] if row is not None else None)

    def reserve_for_user(
        self,
        *,
        session_id: str,
        identity: ExtensionIdentity,
        call_id: str,
        contact_id: str,
        payload: str | None,
    ) -> GatedWrite:
        """`reserve_new` to run in the read of the logging user (`UserStore.get_with_write`), who gives the
        row its scope, platform and user id; the value written is the pk of the reserved row (see
        `new_claim`)."""
        shape, identity_args = _identity_of(identity)
        now = datetime.now(UTC)
        return GatedWrite(
            _reserve_for_user_statement(shape),
            (
                session_id,
                identity.extension_number,
                identity.hashed_extension_id,
                call_id,
                contact_id,
                self._cipher.encrypt(payload),
                now,
                now,
                session_id,
                *identity_args,
            ),
            undo=self.release,
        )

    async def reserve(
        self, new: NewCallLog, *, stale_after: float, existing: CallLogRow | None
    ) -> tuple[Reservation, Claim | None]:
        """Claim the session for this identity before calling the CRM, given what `find(...,
        include_pending=True)` answered for it (`existing`).

        (RESERVED, claim) for the caller that must create (or, when `claim.must_check`, first look for) the CRM
        log; (EXISTS, None) when a log exists or another live request is creating it.
        """
        if existing is not None:
            if existing.status == DONE:
                return Reservation.EXISTS, None
            claim = await self.take_over(
                existing,
                stale_after=stale_after,
                user_id=new.user_id,
                contact_id=new.contact_id,
                payload=new.payload,
            )
            return (Reservation.RESERVED, claim) if claim else (Reservation.EXISTS, None)
        claim = await self.reserve_new(new)
        # None: another request reserved it between our lookup and this insert
        return (Reservation.RESERVED, claim) if claim else (Reservation.EXISTS, None)

    async def take_over(
        self,
        row: CallLogRow,
        *,
        stale_after: float,
        user_id: str | None = None,
        contact_id: str | None = None,
        payload: str | None = None,
    ) -> Claim | None:
        """Move a parked or abandoned row to `pending` for this request; None when someone else has it.

        The status change is the compare-and-set: of two contenders only one sees its UPDATE match.
        """
        now = datetime.now(UTC)
        changes = (
            self._db.stamp(now),
            user_id,
            contact_id,
            self._cipher.encrypt(payload) if payload is not None else None,
            row.pk,
        )
        if row.status == PENDING:
            stale_before = self._db.stamp(now - timedelta(seconds=stale_after))
            taken = await self._db.run(_TAKE_OVER_ABANDONED, *changes, stale_before)
        elif row.status in PARKED:
            taken = await self._db.run(_TAKE_OVER_PARKED, *changes, row.status)
        else:
            return None
        if taken != 1:
            return None
        # an abandoned `pending` row may have sent its create before dying: its outcome is unknown too
        return Claim(
            row.pk,
            must_check=row.status in (PENDING, UNKNOWN),
            attempts=row.attempts,
            retried=True,
            unanswered_at=row.updated_at if row.status == UNKNOWN else None,
        )

    async def complete(self, pk: int, third_party_log_id: str) -> None:
        await self._db.run(_COMPLETE, third_party_log_id, self._db.stamp(datetime.now(UTC)), pk)

    async def release(self, pk: int) -> None:
        """The CRM refused the log for good (4xx): forget the reservation so the client's retry can log it."""
        await self._db.run(_RELEASE, pk)

    async def park(
        self,
        pk: int,
        *,
        status: str,
        payload: str | None,
        attempts: int,
        next_attempt_at: datetime | None,
        recorded_at: datetime | None = None,
    ) -> None:
        """Keep a log the CRM did not take (`queued`/`unknown`/`failed`) with its request, for a later try.

        `recorded_at` keeps the time of the original unanswered create when a check found nothing yet."""
        await self._db.run(
            _PARK,
            status,
            attempts,
            self._db.stamp(next_attempt_at),
            self._db.stamp(recorded_at or datetime.now(UTC)),
            self._cipher.encrypt(payload) if payload is not None else None,
            pk,
        )

    async def due(self, *, limit: int, stale_after: float) -> list[CallLogRow]:
        """Rows the retrier should try now: parked and due, or abandoned mid-request with a request kept."""
        now = datetime.now(UTC)
        stale_before = now - timedelta(seconds=stale_after)
        rows = await self._db.all(_DUE, self._db.stamp(now), self._db.stamp(stale_before), limit)
        return [self._row_of(r) for r in rows]

    async def payload(self, pk: int) -> str | None:
        row = await self._db.one(_PAYLOAD, pk)
        return self._cipher.decrypt(row["payload"]) if row is not None else None
