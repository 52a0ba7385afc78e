"""A first start's schema: the newest tables created in an empty database straight through its driver.

`tables.py` rendered once per dialect (`schema.<dialect>.sql` beside the migrations, written by
`python -m appconnect.store.migrate render-schema`; a test fails when it no longer matches `tables.py`, and
another proves it builds what replaying every migration builds). Run with `sqlite3` or asyncpg and stamped with
the head revision, it spares a first start importing SQLAlchemy and Alembic (about 0.2 s of CPU), which `serve`
would otherwise wait for before its workers may serve. Any database that is not empty goes through Alembic.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

from appconnect.store.revisions import head_revision
from appconnect.store.urls import make_sqlite_private, normalize_url, sqlite_file

SCHEMA_FILES = Path(__file__).resolve().parent / "migrations"
#: separates the statements of a rendered schema file
STATEMENT_END = ";\n\n"
_VERSION_TABLE = (
    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
)


def schema_file(dialect: str) -> Path:
    return SCHEMA_FILES / f"schema.{dialect}.sql"


def statements(dialect: str) -> list[str]:
    """The rendered schema's statements, without the header comment."""
    text = schema_file(dialect).read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return [part.strip() for part in body.split(STATEMENT_END.strip()) if part.strip()]


def create_if_empty(database_url: str) -> bool:
    """Create the newest schema, stamped with the head revision, in a database without any table.

    False (nothing done) when the database has a table, the URL is one this path does not handle (options in
    it, another driver) or anything fails: the caller then runs Alembic, which explains errors. One
    transaction: of two first starts at once, one creates and the other finds tables (or loses on a duplicate
    table) and leaves it to Alembic, which finds the head already stamped.
    """
    head = head_revision()
    if head is None:
        return False
    url = normalize_url(database_url)
    try:
        if url.startswith("sqlite"):
            path = sqlite_file(url)
            if path is None or "?" in url:
                return False
            make_sqlite_private(url)  # 0600 before SQLite creates the file
            return _create_sqlite(str(path), head)
        scheme, _, rest = url.partition("://")
        if scheme not in ("postgresql", "postgresql+asyncpg") or "?" in rest:
            return False
        return asyncio.run(_create_postgres(f"postgresql://{rest}", head))
    except Exception:
        return False


def _create_sqlite(path: str, head: str) -> bool:
    with closing(sqlite3.connect(path, isolation_level=None, timeout=5)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")  # kept by the file: every later connection writes ahead
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]:
                conn.execute("ROLLBACK")
                return False
            for statement in statements("sqlite"):
                conn.execute(statement)
            conn.execute(_VERSION_TABLE)
            conn.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (head,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return True


async def _create_postgres(dsn: str, head: str) -> bool:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        async with conn.transaction():
            tables = await conn.fetchval(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
            )
            if tables:
                return False
            for statement in statements("postgresql"):
                await conn.execute(statement)
            await conn.execute(_VERSION_TABLE)
            await conn.execute("INSERT INTO alembic_version (version_num) VALUES ($1)", head)
    finally:
        await conn.close()
    return True
