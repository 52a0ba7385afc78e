"""The message outbox's claims are compare-and-sets: of two retriers holding the same entry, one sends it.

The retrier lock serialises passes, so only these tests show what the claim itself guarantees (both databases).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from appconnect.security.crypto import TokenCipher
from appconnect.store.message_logs import MessageLogStore, OutboxEntry
from tests.conftest import migrated_database


async def _queued_entry(store: MessageLogStore) -> OutboxEntry:
    await store.enqueue(
        scope="scope",
        user_id="u",
        platform="testcrm",
        payload='{"logInfo": {}}',
        next_attempt_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    [entry] = await store.due(limit=10, stale_after=60.0)
    return entry


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_claims_of_one_queued_entry_give_one_payload(backend: str, tmp_path: Path) -> None:
    async def race() -> list[str | None]:
        db = await migrated_database(backend, tmp_path)
        try:
            store = MessageLogStore(TokenCipher((Fernet.generate_key().decode(),)), db)
            entry = await _queued_entry(store)
            first = await store.claim(entry, stale_after=60.0)
            rest = await asyncio.gather(*(store.claim(entry, stale_after=60.0) for _ in range(4)))
            return [first, *rest]
        finally:
            await db.close()

    claims = asyncio.run(race())
    assert claims[0] == '{"logInfo": {}}'
    assert claims[1:] == [None] * 4


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_entry_being_sent_is_taken_over_only_once_stale(backend: str, tmp_path: Path) -> None:
    async def run() -> tuple[str | None, str | None, str | None]:
        db = await migrated_database(backend, tmp_path)
        try:
            store = MessageLogStore(TokenCipher((Fernet.generate_key().decode(),)), db)
            entry = await _queued_entry(store)
            assert await store.claim(entry, stale_after=60.0) is not None
            [sending] = await store.due(limit=10, stale_after=0.0)
            live = await store.claim(sending, stale_after=60.0)  # just before the edge: a live sender has it
            await asyncio.sleep(0.3)
            first = await store.claim(sending, stale_after=0.1)  # just after it: abandoned, taken over once
            second = await store.claim(sending, stale_after=0.1)
            return live, first, second
        finally:
            await db.close()

    live, first, second = asyncio.run(run())
    assert live is None
    assert first == '{"logInfo": {}}'
    assert second is None
