"""Call-log rows: reserved before the CRM is called, completed with the CRM's log id, or released on failure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from appconnect.store.db import write_transaction
from appconnect.store.tables import call_logs
from appconnect.store.users import as_utc


@dataclass(frozen=True, slots=True)
class ExtensionIdentity:
    """Which agent logged the call: a transferred call may be logged once per agent."""

    extension_number: str = ""
    hashed_extension_id: str = ""


@dataclass(slots=True)
class CallLogRow:
    pk: int
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


class Reservation(Enum):
    RESERVED = "reserved"
    EXISTS = "exists"


def _identity_clause(identity: ExtensionIdentity) -> ColumnElement[bool] | None:
    """The contract's lookup: exact hash, or a legacy row of the same extension, or a legacy empty row."""
    c = call_logs.c
    legacy = or_(c.hashed_extension_id == "", c.hashed_extension_id.is_(None))
    if identity.hashed_extension_id:
        clauses = [
            c.hashed_extension_id == identity.hashed_extension_id,
            and_(c.extension_number == "", legacy),
        ]
        if identity.extension_number:
            clauses.append(and_(c.extension_number == identity.extension_number, legacy))
        return or_(*clauses)
    if identity.extension_number:
        return c.extension_number == identity.extension_number
    return None


def _row(row: Any) -> CallLogRow:
    return CallLogRow(
        pk=row.pk,
        session_id=row.session_id,
        extension_number=row.extension_number,
        hashed_extension_id=row.hashed_extension_id,
        call_id=row.call_id,
        platform=row.platform,
        user_id=row.user_id,
        contact_id=row.contact_id,
        third_party_log_id=row.third_party_log_id,
        status=row.status,
        updated_at=as_utc(row.updated_at),
    )


def _rank(row: CallLogRow, identity: ExtensionIdentity) -> int:
    if identity.hashed_extension_id and row.hashed_extension_id == identity.hashed_extension_id:
        return 0
    if identity.extension_number and row.extension_number == identity.extension_number:
        return 1
    return 2


class CallLogStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def find(
        self, session_ids: list[str], identity: ExtensionIdentity, *, include_pending: bool = False
    ) -> dict[str, CallLogRow]:
        """The best-matching row per session id."""
        query = select(call_logs).where(call_logs.c.session_id.in_(session_ids))
        clause = _identity_clause(identity)
        if clause is not None:
            query = query.where(clause)
        if not include_pending:
            query = query.where(call_logs.c.status == "done")
        async with self._engine.connect() as conn:
            rows = [_row(r) for r in (await conn.execute(query)).all()]
        best: dict[str, CallLogRow] = {}
        for row in sorted(rows, key=lambda r: _rank(r, identity)):
            best.setdefault(row.session_id, row)
        return best

    async def reserve(
        self,
        *,
        session_id: str,
        identity: ExtensionIdentity,
        call_id: str,
        platform: str,
        user_id: str,
        contact_id: str,
        stale_after: float,
    ) -> tuple[Reservation, int | None]:
        """Claim the session for this identity before calling the CRM.

        Returns (RESERVED, pk) for the caller that must create the CRM log, or (EXISTS, None) when a log exists
        or another request is creating it. A `pending` row older than `stale_after` seconds belonged to a
        request that died mid-way; it is taken over.
        """
        existing = await self.find([session_id], identity, include_pending=True)
        now = datetime.now(UTC)
        if session_id in existing:
            row = existing[session_id]
            if (
                row.status == "done"
                or row.updated_at is None
                or row.updated_at > now - timedelta(seconds=stale_after)
            ):
                return Reservation.EXISTS, None
            async with write_transaction(self._engine) as conn:
                taken = await conn.execute(
                    update(call_logs)
                    .where(
                        call_logs.c.pk == row.pk,
                        call_logs.c.status == "pending",
                        call_logs.c.updated_at == row.updated_at,
                    )
                    .values(updated_at=now, user_id=user_id, contact_id=contact_id)
                )
            return (Reservation.RESERVED, row.pk) if taken.rowcount == 1 else (Reservation.EXISTS, None)
        try:
            async with write_transaction(self._engine) as conn:
                result = await conn.execute(
                    insert(call_logs)
                    .values(
                        session_id=session_id,
                        extension_number=identity.extension_number,
                        hashed_extension_id=identity.hashed_extension_id,
                        call_id=call_id,
                        platform=platform,
                        user_id=user_id,
                        contact_id=contact_id,
                        status="pending",
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(call_logs.c.pk)
                )
                pk = int(result.scalar_one())
        except IntegrityError:
            return Reservation.EXISTS, None
        return Reservation.RESERVED, pk

    async def complete(self, pk: int, third_party_log_id: str) -> None:
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(call_logs)
                .where(call_logs.c.pk == pk)
                .values(third_party_log_id=third_party_log_id, status="done", updated_at=datetime.now(UTC))
            )

    async def release(self, pk: int) -> None:
        """The CRM did not take the log: forget the reservation so the client's retry can log it."""
        async with write_transaction(self._engine) as conn:
            await conn.execute(delete(call_logs).where(call_logs.c.pk == pk, call_logs.c.status == "pending"))
