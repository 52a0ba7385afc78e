"""Call notes cached for server-side logging: per CRM account, encrypted, gone once expired (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography.fernet import Fernet

from appconnect.security.crypto import TokenCipher
from appconnect.store.admin import AdminSettingsStore, CallNoteCache
from appconnect.store.sql import Database, sql
from tests.conftest import migrated_database

_COUNT = sql("SELECT COUNT(*) AS n FROM call_note_cache")


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    database = await migrated_database(request.param, tmp_path)
    try:
        yield database
    finally:
        await database.close()


def notes_of(db: Database) -> CallNoteCache:
    return CallNoteCache(TokenCipher((Fernet.generate_key().decode(),)), db)


async def test_a_note_is_read_back_only_in_its_own_account(db: Database) -> None:
    notes = notes_of(db)
    await notes.put("testcrm||account:a", "s-1", "Call back Tuesday", ttl_seconds=60)
    await notes.put("testcrm||account:b", "s-1", "Planted", ttl_seconds=60)
    assert await notes.get("testcrm||account:a", "s-1") == "Call back Tuesday"
    assert await notes.get("testcrm||account:b", "s-1") == "Planted"
    assert await notes.get("testcrm||account:c", "s-1") is None
    # a second note for the same call replaces the first
    await notes.put("testcrm||account:a", "s-1", "Call back Wednesday", ttl_seconds=60)
    assert await notes.get("testcrm||account:a", "s-1") == "Call back Wednesday"


async def test_expired_notes_are_not_served_and_are_purged_by_later_writes(db: Database) -> None:
    notes = notes_of(db)
    for index in range(5):
        await notes.put("scope", f"old-{index}", "stale", ttl_seconds=-1)
    assert await notes.get("scope", "old-0") is None
    await notes.put("scope", "fresh", "kept", ttl_seconds=60)
    row = await db.one(_COUNT)
    assert row is not None and row["n"] == 1
    assert await notes.get("scope", "fresh") == "kept"


async def test_admin_settings_are_replaced_whole(db: Database) -> None:
    store = AdminSettingsStore(db)
    assert await store.get("account-hash") is None
    await store.put("account-hash", {"autoLogCalls": {"value": True}})
    await store.put("account-hash", {"addCallLogNote": {"value": False}})
    assert await store.get("account-hash") == {"addCallLogNote": {"value": False}}
    assert await store.get("other-hash") is None
