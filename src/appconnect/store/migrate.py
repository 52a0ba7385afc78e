"""Create or upgrade the database schema (`appconnect migrate`); also run by `serve` before workers start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from appconnect.security.redact import redact
from appconnect.store.db import normalize_url, sqlite_file

MIGRATIONS = Path(__file__).parent / "migrations"


class MigrationFailed(Exception):
    """The schema could not be brought up to date; the message is one line an operator can act on."""


def alembic_config(database_url: str) -> Config:
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
    """Bring the schema to `revision`. Blocking: call it from a thread or before the event loop starts."""
    command.upgrade(alembic_config(database_url), revision)


def upgrade_or_explain(database_url: str, revision: str = "head") -> None:
    """`upgrade` for the command line: any failure becomes one `MigrationFailed` line, no traceback."""
    try:
        upgrade(database_url, revision)
    except Exception as exc:
        raise MigrationFailed(
            f"cannot migrate {describe_database(database_url)}: {failure_reason(exc, database_url)}"
        ) from None
