"""The Alembic migrations produce exactly the schema `tables.py` describes, and upgrade in place."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from appconnect.store.db import create_engine
from appconnect.store.fresh_schema import create_if_empty
from appconnect.store.migrate import upgrade
from appconnect.store.revisions import head_revision
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


def describe_schema(url: str) -> dict[str, object]:
    """Every table's columns (type, nullability, server default), primary key, unique constraints and indexes,
    as the database itself reports them."""
    from sqlalchemy import inspect

    async def read() -> dict[str, object]:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as conn:

                def describe(sync: Connection) -> dict[str, object]:
                    inspector = inspect(sync)
                    schema: dict[str, object] = {}
                    for table in sorted(inspector.get_table_names()):
                        schema[table] = {
                            # by name: migrations append added columns at the end, and every statement
                            # names its columns, so the order is the one thing allowed to differ
                            "columns": sorted(
                                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                                for c in inspector.get_columns(table)
                            ),
                            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
                            "unique": sorted(
                                (u["name"] or "", tuple(u["column_names"]))
                                for u in inspector.get_unique_constraints(table)
                            ),
                            "indexes": sorted(
                                (i["name"] or "", tuple(str(c) for c in i["column_names"]), bool(i["unique"]))
                                for i in inspector.get_indexes(table)
                            ),
                        }
                    return schema

                return await conn.run_sync(describe)
        finally:
            await engine.dispose()

    return asyncio.run(read())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_new_database_is_created_exactly_as_the_migrations_build_it(tmp_path: Path, backend: str) -> None:
    """A first start creates an empty database from tables.py and stamps it: the same schema, column by column,
    as replaying every migration, so later migrations apply to either alike."""
    from alembic import command

    from appconnect.store.migrate import alembic_config
    from tests.conftest import create_test_database, postgres_reachable, postgres_unavailable

    if backend == "sqlite":
        replayed, created = (
            f"sqlite+aiosqlite:///{tmp_path / name}" for name in ("replayed.db", "created.db")
        )
    else:
        if not postgres_reachable():
            postgres_unavailable("PostgreSQL not reachable")
        replayed, created = create_test_database(), create_test_database()
    command.upgrade(alembic_config(replayed), "head")  # every migration, one after the other
    assert create_if_empty(created)  # empty: created from the rendered tables.py and stamped, no Alembic
    assert not create_if_empty(created)  # not empty any more: left to Alembic
    assert describe_schema(created) == describe_schema(replayed)
    assert schema_differences(created) == []
    upgrade(created)  # stamped at the head: nothing left to do, no error
    assert describe_schema(created) == describe_schema(replayed)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_packaged_schema_is_what_tables_py_renders(dialect: str) -> None:
    """A first start runs `schema.<dialect>.sql`; after a change to tables.py it must be rendered again."""
    from appconnect.store.fresh_schema import schema_file
    from appconnect.store.migrate import render_schema

    assert schema_file(dialect).read_text(encoding="utf-8") == render_schema(dialect), (
        "run `python -m appconnect.store.migrate render-schema`"
    )


def test_a_first_start_leaves_a_private_write_ahead_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'first.db'}"
    assert create_if_empty(url)
    assert (tmp_path / "first.db").stat().st_mode & 0o777 == 0o600
    with closing(sqlite3.connect(tmp_path / "first.db")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]
