"""Message-log rows: one per logged RingCentral message, grouped into one CRM activity per conversation log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from appconnect.store.db import write_transaction
from appconnect.store.tables import message_logs


@dataclass(slots=True)
class MessageLogRow:
    id: str
    platform: str
    conversation_id: str | None
    conversation_log_id: str | None
    third_party_log_id: str | None
    user_id: str


class MessageLogStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def logged_ids(self, message_ids: list[str]) -> set[str]:
        if not message_ids:
            return set()
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(message_logs.c.id).where(message_logs.c.id.in_(message_ids)))
            return {r.id for r in rows}

    async def conversation_log_id_owner(self, conversation_log_id: str) -> str | None:
        """The CRM activity already holding this conversation log, if any."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(message_logs.c.third_party_log_id)
                    .where(
                        message_logs.c.conversation_log_id == conversation_log_id,
                        message_logs.c.third_party_log_id.is_not(None),
                    )
                    .limit(1)
                )
            ).first()
        return row.third_party_log_id if row is not None else None

    async def add(self, row: MessageLogRow) -> None:
        now = datetime.now(UTC)
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                insert(message_logs).values(
                    id=row.id,
                    platform=row.platform,
                    conversation_id=row.conversation_id,
                    conversation_log_id=row.conversation_log_id,
                    third_party_log_id=row.third_party_log_id,
                    user_id=row.user_id,
                    created_at=now,
                    updated_at=now,
                )
            )
