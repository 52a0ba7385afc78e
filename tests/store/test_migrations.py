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
