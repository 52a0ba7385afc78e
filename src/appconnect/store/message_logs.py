"""Message-log rows, per tenant scope: one per logged RingCentral message, grouped into one CRM activity per
conversation log. A message whose create timed out after it was sent is kept as `unknown` until the CRM says
whether the activity exists; one whose append to an existing activity got no answer is kept as
`append_unknown` (with that activity's id). Requests the CRM could not take wait, encrypted, in the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from appconnect.security.crypto import TokenCipher
from appconnect.store.sql import Database, Statement, sql

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


_UNKNOWN_IDS = sql(
    "SELECT id, updated_at FROM message_logs WHERE scope = ? AND conversation_log_id = ? AND status = 'unknown'"
)
_OWNER = sql(
    """SELECT third_party_log_id FROM message_logs WHERE scope = ? AND conversation_log_id = ?
    AND third_party_log_id IS NOT NULL AND status = 'done' LIMIT 1"""
)
_FORGET_UNKNOWN = sql(
    "DELETE FROM message_logs WHERE scope = ? AND conversation_log_id = ? AND status = 'unknown'"
)
_ADOPT_UNKNOWN = sql(
    """UPDATE message_logs SET status = 'done', third_party_log_id = ?, updated_at = ?
    WHERE scope = ? AND conversation_log_id = ? AND status = 'unknown'"""
)
_MARK_DONE = sql(
    "UPDATE message_logs SET status = 'done', third_party_log_id = ?, updated_at = ? WHERE scope = ? AND id = ?"
)
_ADD = sql(
    """INSERT INTO message_logs (scope, id, platform, conversation_id, conversation_log_id, third_party_log_id,
    user_id, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
)
_ENQUEUE = sql(
    """INSERT INTO message_outbox (scope, user_id, platform, payload, status, attempts, next_attempt_at,
    created_at, updated_at) VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?)"""
)
_DUE = sql(
    """SELECT pk, scope, user_id, platform, status, attempts, updated_at FROM message_outbox
    WHERE (status = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= ?))
    OR (status = 'sending' AND updated_at < ?) ORDER BY pk LIMIT ?"""
)
_CLAIM_QUEUED = sql(
    "UPDATE message_outbox SET status = 'sending', updated_at = ? WHERE pk = ? AND status = 'queued'"
)
_CLAIM_ABANDONED = sql(
    "UPDATE message_outbox SET status = 'sending', updated_at = ? WHERE pk = ? AND status = 'sending' AND updated_at < ?"
)
_OUTBOX_PAYLOAD = sql("SELECT payload FROM message_outbox WHERE pk = ?")
_DELIVERED = sql("DELETE FROM message_outbox WHERE pk = ?")
_RETRY_LATER = sql(
    "UPDATE message_outbox SET status = ?, attempts = ?, next_attempt_at = ?, updated_at = ? WHERE pk = ?"
)
_by_ids: dict[tuple[str, int], Statement] = {}


def _ids_with_status(status: str, count: int) -> Statement:
    """`SELECT id ... WHERE id IN (?, ...)` for `count` ids, built once per size."""
    key = (status, count)
    statement = _by_ids.get(key)
    if statement is None:
        placeholders = ", ".join("?" * count)
        statement = _by_ids[key] = sql(
            f"SELECT id FROM message_logs WHERE scope = ? AND status = ? AND id IN ({placeholders})"  # noqa: S608
        )
    return statement


class MessageLogStore:
    def __init__(self, cipher: TokenCipher, db: Database) -> None:
        self._cipher = cipher
        self._db = db

    def _now(self) -> object:
        return self._db.stamp(datetime.now(UTC))

    async def _ids(self, scope: str, status: str, message_ids: list[str]) -> set[str]:
        if not message_ids:
            return set()
        rows = await self._db.all(_ids_with_status(status, len(message_ids)), scope, status, *message_ids)
        return {r["id"] for r in rows}

    async def logged_ids(self, scope: str, message_ids: list[str]) -> set[str]:
        """Messages already in a CRM activity of this scope."""
        return await self._ids(scope, "done", message_ids)

    async def conversation_log_id_owner(self, scope: str, conversation_log_id: str) -> str | None:
        """The CRM activity already holding this conversation log in this scope, if any."""
        row = await self._db.one(_OWNER, scope, conversation_log_id)
        return str(row["third_party_log_id"]) if row is not None else None

    async def unknown_ids(self, scope: str, conversation_log_id: str) -> tuple[list[str], datetime | None]:
        """Messages whose activity create was sent without an answer (the CRM may or may not hold them), and
        when the latest of those answers went missing."""
        rows = await self._db.all(_UNKNOWN_IDS, scope, conversation_log_id)
        times = [t for t in (self._db.when(r["updated_at"]) for r in rows) if t is not None]
        return [r["id"] for r in rows], max(times, default=None)

    async def resolve_unknown(self, scope: str, conversation_log_id: str, log_id: str | None) -> None:
        """The CRM answered: adopt its activity (`log_id`) for the unknown rows, or forget them (None)."""
        if log_id is None:
            await self._db.run(_FORGET_UNKNOWN, scope, conversation_log_id)
        else:
            await self._db.run(_ADOPT_UNKNOWN, log_id, self._now(), scope, conversation_log_id)

    async def append_unknown_ids(self, scope: str, message_ids: list[str]) -> set[str]:
        """Messages whose append was sent without an answer: the activity may or may not hold them."""
        return await self._ids(scope, APPEND_UNKNOWN, message_ids)

    async def mark_done(self, scope: str, message_id: str, log_id: str) -> None:
        """A message kept as `append_unknown` is now known to be in the activity `log_id`."""
        await self._db.run(_MARK_DONE, log_id, self._now(), scope, message_id)

    async def add(self, scope: str, row: MessageLogRow, *, recorded_at: datetime | None = None) -> None:
        """Keep a message's row; `recorded_at` back-dates an `unknown` row whose answer did come (a 5xx): the
        CRM was done with it then, so the next attempt need not wait for it to settle."""
        now = self._now() if recorded_at is None else self._db.stamp(recorded_at)
        await self._db.run(
            _ADD,
            scope,
            row.id,
            row.platform,
            row.conversation_id,
            row.conversation_log_id,
            row.third_party_log_id,
            row.user_id,
            row.status,
            now,
            now,
        )

    # --- outbox -------------------------------------------------------------------------------------------

    async def enqueue(
        self, *, scope: str, user_id: str, platform: str, payload: str, next_attempt_at: datetime
    ) -> None:
        now = self._now()
        await self._db.run(
            _ENQUEUE,
            scope,
            user_id,
            platform,
            self._cipher.encrypt(payload),
            self._db.stamp(next_attempt_at),
            now,
            now,
        )

    async def due(self, *, limit: int, stale_after: float) -> list[OutboxEntry]:
        now = datetime.now(UTC)
        stale_before = self._db.stamp(now - timedelta(seconds=stale_after))
        rows = await self._db.all(_DUE, self._db.stamp(now), stale_before, limit)
        return [
            OutboxEntry(
                r["pk"],
                r["scope"],
                r["user_id"],
                r["platform"],
                r["status"],
                r["attempts"] or 0,
                self._db.when(r["updated_at"]),
            )
            for r in rows
        ]

    async def claim(self, entry: OutboxEntry, *, stale_after: float) -> str | None:
        """Take an outbox entry for delivery (compare-and-set on its status); its decrypted request, or None."""
        now = datetime.now(UTC)
        if entry.status == "sending":
            stale_before = self._db.stamp(now - timedelta(seconds=stale_after))
            taken = await self._db.run(_CLAIM_ABANDONED, self._db.stamp(now), entry.pk, stale_before)
        else:
            taken = await self._db.run(_CLAIM_QUEUED, self._db.stamp(now), entry.pk)
        if taken != 1:
            return None
        row = await self._db.one(_OUTBOX_PAYLOAD, entry.pk)
        return self._cipher.decrypt(row["payload"]) if row is not None else None

    async def delivered(self, pk: int) -> None:
        await self._db.run(_DELIVERED, pk)

    async def retry_later(self, pk: int, *, attempts: int, next_attempt_at: datetime | None) -> None:
        """Back to the queue for a later attempt, or `failed` (kept for an operator) when none is left."""
        status = "queued" if next_attempt_at is not None else "failed"
        await self._db.run(_RETRY_LATER, status, attempts, self._db.stamp(next_attempt_at), self._now(), pk)
