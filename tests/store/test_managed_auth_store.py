"""The managed-auth store: one encrypted object per account, platform and key; expired ones read as absent
(SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography.fernet import Fernet

from appconnect.security.crypto import TokenCipher
from appconnect.store.managed_auth import ManagedAuthStore
from appconnect.store.sql import Database, sql
from tests.conftest import migrated_database

_DATA = sql("SELECT data FROM managed_auth")
_KEYS = sql("SELECT data_key FROM managed_auth ORDER BY data_key")


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    database = await migrated_database(request.param, tmp_path)
    try:
        yield database
    finally:
        await database.close()


def store_of(db: Database) -> ManagedAuthStore:
    return ManagedAuthStore(TokenCipher((Fernet.generate_key().decode(),)), db)


async def test_values_are_kept_per_account_and_platform_and_unreadable_at_rest(db: Database) -> None:
    store = store_of(db)
    await store.put("account-a", "testcrm", "org", {"fields": {"apiKey": "key-of-a"}})
    await store.put("account-b", "testcrm", "org", {"fields": {"apiKey": "key-of-b"}})
    assert await store.get("account-a", "testcrm", "org") == {"fields": {"apiKey": "key-of-a"}}
    assert await store.get("account-a", "insightly", "org") is None
    assert await store.get("account-c", "testcrm", "org") is None
    # a second save replaces the first
    await store.put("account-a", "testcrm", "org", {"fields": {}})
    assert await store.get("account-a", "testcrm", "org") == {"fields": {}}
    stored = [row["data"] for row in await db.all(_DATA)]
    assert len(stored) == 2 and all("key-of" not in d and "apiKey" not in d for d in stored)


async def test_listing_by_prefix_and_deleting(db: Database) -> None:
    store = store_of(db)
    for extension in ("101", "102"):
        await store.put("account", "vinsolutions", f"user:{extension}", {"fields": {"crmUserId": extension}})
    await store.put("account", "vinsolutions", "org", {"fields": {"dealerId": "1"}})
    await store.put("other", "vinsolutions", "user:103", {"fields": {}})
    listed = await store.list("account", "vinsolutions", "user:")
    assert [key for key, _ in listed] == ["user:101", "user:102"]
    assert await store.delete("account", "vinsolutions", "user:101") == 1
    assert [key for key, _ in await store.list("account", "vinsolutions", "user:")] == ["user:102"]


async def test_an_expired_object_reads_as_absent(db: Database) -> None:
    store = store_of(db)
    now = datetime.now(UTC)
    await store.put("account", "", "oauth-pending", {"clientId": "x"}, expires_at=now - timedelta(seconds=1))
    await store.put("account", "", "kept", {"clientId": "y"}, expires_at=now + timedelta(hours=1))
    assert await store.get("account", "", "oauth-pending") is None
    assert await store.get("account", "", "kept") == {"clientId": "y"}
    assert [key for key, _ in await store.list("account", "", "")] == ["kept"]


async def test_expired_objects_are_purged_by_later_expiring_writes(db: Database) -> None:
    store = store_of(db)
    past = datetime.now(UTC) - timedelta(seconds=1)
    for index in range(3):
        await store.put(f"account-{index}", "", "oauth-pending", {"clientId": "x"}, expires_at=past)
    await store.put("account", "testcrm", "org", {"fields": {}})  # never expires
    await store.put("account", "", "oauth-pending", {"clientId": "y"}, expires_at=past + timedelta(hours=1))
    assert [row["data_key"] for row in await db.all(_KEYS)] == ["oauth-pending", "org"]
