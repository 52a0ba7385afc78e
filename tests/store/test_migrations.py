"""The Alembic migrations produce exactly the schema `tables.py` describes, and upgrade in place."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from appconnect.store.db import create_engine
from appconnect.store.migrate import upgrade
from appconnect.store.tables import metadata


def schema_differences(url: str) -> list[object]:
    async def compare() -> list[object]:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:

                def diff(sync: Connection) -> list[object]:
                    return list(compare_metadata(MigrationContext.configure(sync), metadata))

                return await conn.run_sync(diff)
        finally:
            await engine.dispose()

    return asyncio.run(compare())


def test_migrations_match_the_table_definitions(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'schema.sqlite3'}"
    upgrade(url)
    assert schema_differences(url) == []


def test_upgrade_is_incremental_and_idempotent(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'steps.sqlite3'}"
    upgrade(url, "0001")
    upgrade(url)
    upgrade(url)
    assert schema_differences(url) == []


def test_logs_from_before_scopes_stay_with_their_user(tmp_path: Path) -> None:
    """0003 keys existing rows by `legacy:<user id>`: matched again for that user, never for another tenant."""
    from sqlalchemy import text

    url = f"sqlite+aiosqlite:///{tmp_path / 'legacy.sqlite3'}"
    upgrade(url, "0002")

    async def run(statements: list[str]) -> list[tuple[object, ...]]:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                rows: list[tuple[object, ...]] = []
                for statement in statements:
                    result = await conn.execute(text(statement))
                    if result.returns_rows:
                        rows += [tuple(r) for r in result.all()]
                return rows
        finally:
            await engine.dispose()

    asyncio.run(
        run(
            [
                "INSERT INTO call_logs (session_id, platform, user_id, third_party_log_id, status)"
                " VALUES ('s1', 'testcrm', 'u1-testcrm', '7', 'done')",
                "INSERT INTO message_logs (id, platform, conversation_log_id, third_party_log_id, user_id)"
                " VALUES ('m1', 'testcrm', 'c1', '8', 'u1-testcrm')",
            ]
        )
    )
    upgrade(url)
    rows = asyncio.run(
        run(
            [
                "SELECT scope, session_id, status FROM call_logs",
                "SELECT scope, id, status, third_party_log_id FROM message_logs",
            ]
        )
    )
    assert rows == [("legacy:u1-testcrm", "s1", "done"), ("legacy:u1-testcrm", "m1", "done", "8")]
    assert schema_differences(url) == []
