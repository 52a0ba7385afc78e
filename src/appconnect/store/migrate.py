"""Create or upgrade the database schema (`appconnect migrate`); also run by `serve` before workers start."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from appconnect.security.redact import redact
from appconnect.store.db import normalize_url, sqlite_file
from appconnect.store.fresh_schema import STATEMENT_END, create_if_empty, schema_file
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

    A database with no tables at all that is to reach the newest revision is created from `tables.py` as
    rendered for its dialect and stamped with that revision (`fresh_schema`: what replaying every migration
    produces, proven by a test), which spares a first start most of Alembic's cost; anything else goes through
    the migrations.
    """
    head = head_revision()
    if revision in ("head", head) and head is not None and create_if_empty(database_url):
        return
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def render_schema(dialect: str) -> str:
    """`tables.py` as the DDL `fresh_schema` runs: every table (in dependency order) and its indexes."""
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
    from sqlalchemy.engine import Dialect
    from sqlalchemy.schema import CreateIndex, CreateTable

    from appconnect.store.tables import metadata

    compilers: dict[str, type[Dialect]] = {"sqlite": SQLiteDialect_pysqlite, "postgresql": PGDialect_asyncpg}
    compiler = compilers[dialect]()
    parts: list[str] = []
    for table in metadata.sorted_tables:
        parts.append(str(CreateTable(table).compile(dialect=compiler)))
        for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
            parts.append(str(CreateIndex(index).compile(dialect=compiler)))
    parts = ["\n".join(line.rstrip() for line in part.strip().splitlines()) for part in parts]
    header = (
        f"-- The newest schema for {dialect}, rendered from store/tables.py. Do not edit: run\n"
        "-- `python -m appconnect.store.migrate render-schema` after changing tables.py (and add a migration).\n"
    )
    return header + STATEMENT_END.join(parts) + STATEMENT_END


def upgrade_or_explain(database_url: str, revision: str = "head") -> None:
    """`upgrade` for the command line: any failure becomes one `MigrationFailed` line, no traceback."""
    try:
        upgrade(database_url, revision)
    except Exception as exc:
        raise MigrationFailed(
            f"cannot migrate {describe_database(database_url)}: {failure_reason(exc, database_url)}"
        ) from None


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["render-schema"]:
        sys.exit("usage: python -m appconnect.store.migrate render-schema")
    for name in ("sqlite", "postgresql"):
        schema_file(name).write_text(render_schema(name), encoding="utf-8")
        print(f"wrote {schema_file(name)}")
