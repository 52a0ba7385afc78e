"""Message-log rows, per tenant scope: one per logged RingCentral message, grouped into one CRM activity per
conversation log. A message whose create timed out after it was sent is kept as `unknown` until the CRM says
whether the activity exists; one whose append to an existing activity got no answer is kept as
`append_unknown` (with that activity's id). Requests the CRM could not take wait, encrypted, in the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from appconnect.security.crypto import TokenCipher
from appconnect.store.db import write_transaction
from appconnect.store.tables import message_logs, message_outbox
from appconnect.store.users import as_utc

#: status of a message whose append to an existing activity was sent and never answered
APPEND_UNKNOWN = "append_unknown"


@dataclass(slots=True)
class MessageLogRow:
    id: str
    platform: str
    conversation_id: str | None
    conversation_log_id: str | None
    third_party_log_id: str | None
    user_id: str
    status: str = "done"


@dataclass(slots=True)
class OutboxEntry:
    pk: int
    scope: str
    user_id: str
    platform: str
    status: str
    attempts: int
    updated_at: datetime | None


class MessageLogStore:
    def __init__(self, engine: AsyncEngine, cipher: TokenCipher) -> None:
        self._engine = engine
        self._cipher = cipher

    async def logged_ids(self, scope: str, message_ids: list[str]) -> set[str]:
        """Messages already in a CRM activity of this scope."""
        if not message_ids:
            return set()
        c = message_logs.c
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(c.id).where(c.scope == scope, c.id.in_(message_ids), c.status == "done")
            )
            return {r.id for r in rows}

    async def conversation_log_id_owner(self, scope: str, conversation_log_id: str) -> str | None:
        """The CRM activity already holding this conversation log in this scope, if any."""
        c = message_logs.c
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(c.third_party_log_id)
                    .where(
                        c.scope == scope,
                        c.conversation_log_id == conversation_log_id,
                        c.third_party_log_id.is_not(None),
                        c.status == "done",
                    )
                    .limit(1)
                )
            ).first()
        return row.third_party_log_id if row is not None else None

    async def unknown_ids(self, scope: str, conversation_log_id: str) -> tuple[list[str], datetime | None]:
        """Messages whose activity create was sent without an answer (the CRM may or may not hold them), and
        when the latest of those answers went missing."""
        c = message_logs.c
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(c.id, c.updated_at).where(
                        c.scope == scope, c.conversation_log_id == conversation_log_id, c.status == "unknown"
                    )
                )
            ).all()
        times = [t for t in (as_utc(r.updated_at) for r in rows) if t is not None]
        return [r.id for r in rows], max(times, default=None)

    async def resolve_unknown(self, scope: str, conversation_log_id: str, log_id: str | None) -> None:
        """The CRM answered: adopt its activity (`log_id`) for the unknown rows, or forget them (None)."""
        c = message_logs.c
        where = and_(c.scope == scope, c.conversation_log_id == conversation_log_id, c.status == "unknown")
        async with write_transaction(self._engine) as conn:
            if log_id is None:
                await conn.execute(delete(message_logs).where(where))
            else:
                await conn.execute(
                    update(message_logs)
                    .where(where)
                    .values(status="done", third_party_log_id=log_id, updated_at=datetime.now(UTC))
                )

    async def append_unknown_ids(self, scope: str, message_ids: list[str]) -> set[str]:
        """Messages whose append was sent without an answer: the activity may or may not hold them."""
        if not message_ids:
            return set()
        c = message_logs.c
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(c.id).where(c.scope == scope, c.id.in_(message_ids), c.status == APPEND_UNKNOWN)
            )
            return {r.id for r in rows}

    async def mark_done(self, scope: str, message_id: str, log_id: str) -> None:
        """A message kept as `append_unknown` is now known to be in the activity `log_id`."""
        c = message_logs.c
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(message_logs)
                .where(c.scope == scope, c.id == message_id)
                .values(status="done", third_party_log_id=log_id, updated_at=datetime.now(UTC))
            )

    async def add(self, scope: str, row: MessageLogRow) -> None:
        now = datetime.now(UTC)
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                insert(message_logs).values(
                    scope=scope,
                    id=row.id,
                    platform=row.platform,
                    conversation_id=row.conversation_id,
                    conversation_log_id=row.conversation_log_id,
                    third_party_log_id=row.third_party_log_id,
                    user_id=row.user_id,
                    status=row.status,
                    created_at=now,
                    updated_at=now,
                )
            )

    # --- outbox -------------------------------------------------------------------------------------------

    async def enqueue(
        self, *, scope: str, user_id: str, platform: str, payload: str, next_attempt_at: datetime
    ) -> None:
        now = datetime.now(UTC)
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                insert(message_outbox).values(
                    scope=scope,
                    user_id=user_id,
                    platform=platform,
                    payload=self._cipher.encrypt(payload),
                    status="queued",
                    attempts=0,
                    next_attempt_at=next_attempt_at,
                    created_at=now,
                    updated_at=now,
                )
            )

    async def due(self, *, limit: int, stale_after: float) -> list[OutboxEntry]:
        now = datetime.now(UTC)
        c = message_outbox.c
        query = (
            select(message_outbox)
            .where(
                or_(
                    and_(c.status == "queued", or_(c.next_attempt_at.is_(None), c.next_attempt_at <= now)),
                    and_(c.status == "sending", c.updated_at < now - timedelta(seconds=stale_after)),
                )
            )
            .order_by(c.pk)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            OutboxEntry(r.pk, r.scope, r.user_id, r.platform, r.status, r.attempts or 0, as_utc(r.updated_at))
            for r in rows
        ]

    async def claim(self, entry: OutboxEntry, *, stale_after: float) -> str | None:
        """Take an outbox entry for delivery (compare-and-set on its status); its decrypted request, or None."""
        now = datetime.now(UTC)
        c = message_outbox.c
        if entry.status == "sending":
            condition = and_(c.status == "sending", c.updated_at < now - timedelta(seconds=stale_after))
        else:
            condition = c.status == "queued"
        async with write_transaction(self._engine) as conn:
            taken = await conn.execute(
                update(message_outbox)
                .where(c.pk == entry.pk, condition)
                .values(status="sending", updated_at=now)
            )
        if taken.rowcount != 1:
            return None
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(c.payload).where(c.pk == entry.pk))).first()
        return self._cipher.decrypt(row.payload) if row is not None else None

    async def delivered(self, pk: int) -> None:
        async with write_transaction(self._engine) as conn:
            await conn.execute(delete(message_outbox).where(message_outbox.c.pk == pk))

    async def retry_later(self, pk: int, *, attempts: int, next_attempt_at: datetime | None) -> None:
        """Back to the queue for a later attempt, or `failed` (kept for an operator) when none is left."""
        values: dict[str, Any] = {
            "status": "queued" if next_attempt_at is not None else "failed",
            "attempts": attempts,
            "next_attempt_at": next_attempt_at,
            "updated_at": datetime.now(UTC),
        }
        async with write_transaction(self._engine) as conn:
            await conn.execute(update(message_outbox).where(message_outbox.c.pk == pk).values(**values))
