"""Create or upgrade the database schema (`appconnect migrate`); also run by `serve` before workers start."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from appconnect.security.redact import redact
from appconnect.store.db import create_engine, normalize_url, sqlite_file
from appconnect.store.revisions import head_revision

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


class MigrationFailed(Exception):
    """The schema could not be brought up to date; the message is one line an operator can act on."""


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalize_url(database_url).replace("%", "%%"))
    return config


def describe_database(database_url: str) -> str:
    """Which database, without the password: `host:port/name as user`, or the SQLite file."""
    path = sqlite_file(database_url)
    if path is not None:
        return f"SQLite file {path}"
    try:
        url = make_url(normalize_url(database_url))
    except ArgumentError:
        return "the configured database (the URL cannot be parsed)"
    where = f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
    return f"{url.get_backend_name()} database {where}" + (f" as {url.username}" if url.username else "")


def failure_reason(exc: BaseException, database_url: str) -> str:
    """The driver's own words on one line, with the password and anything token-like masked."""
    cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = " ".join(str(cause).split()) or type(cause).__name__
    try:
        password = make_url(normalize_url(database_url)).password
    except ArgumentError:
        password = None
    if password:
        text = text.replace(str(password), "***")
    return redact(text)[:300]


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema to `revision`. Blocking: call it from a thread or before the event loop starts.

    A database with no tables at all that is to reach the newest revision is created from `tables.py` and
    stamped with that revision (what replaying every migration produces, proven by a test), which spares a
    first start most of Alembic's cost; anything else goes through the migrations.
    """
    head = head_revision()
    if revision in ("head", head) and head is not None and asyncio.run(_create_if_empty(database_url, head)):
        return
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


async def _create_if_empty(database_url: str, head: str) -> bool:
    """Create the newest schema in an empty database, stamped `head`; False (nothing done) when any table
    exists. One transaction: a concurrent first start loses on the version table and gets False."""
    from appconnect.store.tables import metadata

    def create(conn: Connection) -> bool:
        if inspect(conn).get_table_names():
            return False
        metadata.create_all(conn)
        conn.execute(
            text(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            )
        )
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:head)"), {"head": head})
        return True

    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(create)
    except DBAPIError:
        return False  # e.g. another process created it at the same moment: the migrations decide
    finally:
        await engine.dispose()


def upgrade_or_explain(database_url: str, revision: str = "head") -> None:
    """`upgrade` for the command line: any failure becomes one `MigrationFailed` line, no traceback."""
    try:
        upgrade(database_url, revision)
    except Exception as exc:
        raise MigrationFailed(
            f"cannot migrate {describe_database(database_url)}: {failure_reason(exc, database_url)}"
        ) from None
