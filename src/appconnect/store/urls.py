"""Database URLs: which database, which file; without importing SQLAlchemy (a worker never needs it)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, unquote_plus

#: Query parameters of a PostgreSQL URL that configure the server's own connections (`store/sql.py`). They are
#: taken out of the URL everything else sees: SQLAlchemy's asyncpg dialect (migrations) would hand them to
#: `asyncpg.connect` as keywords it does not know.
CONNECT_OPTIONS = ("application_name", "statement_timeout", "statement_cache_size")


def normalize_url(url: str) -> str:
    """Accept plain `sqlite:`/`postgres:` URLs and pick the async driver (`sqlite:///./appconnect.sqlite3` and
    the older `sqlite+aiosqlite:///./appconnect.sqlite3` name the same file)."""
    if url.startswith("sqlite:///") or url.startswith("sqlite://"):
        return "sqlite+aiosqlite" + url[len("sqlite") :]
    if url.startswith("postgres://"):
        return "postgresql+asyncpg://" + split_connect_options(url[len("postgres://") :])[0]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + split_connect_options(url[len("postgresql://") :])[0]
    if url.startswith("postgresql+"):
        return split_connect_options(url)[0]
    return url


def split_connect_options(url: str) -> tuple[str, dict[str, str]]:
    """A PostgreSQL URL without the `CONNECT_OPTIONS` in its query, and those options."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, {}
    kept: list[str] = []
    options: dict[str, str] = {}
    for part in query.split("&"):
        key, _eq, value = part.partition("=")
        if unquote_plus(key) in CONNECT_OPTIONS:
            options[unquote_plus(key)] = unquote_plus(value)
        elif part:
            kept.append(part)
    return (base + "?" + "&".join(kept) if kept else base), options


def connect_options(url: str) -> dict[str, str]:
    """The `CONNECT_OPTIONS` a PostgreSQL URL names; ValueError when one that must be a number is not."""
    if is_sqlite(url):
        return {}
    options = split_connect_options(url)[1]
    for key in ("statement_timeout", "statement_cache_size"):
        if key in options and not options[key].strip().isdigit():
            raise ValueError(f"{key} in the database URL must be a whole number")
    return options


def is_sqlite(url: str) -> bool:
    return normalize_url(url).startswith("sqlite")


def sqlite_file(url: str) -> Path | None:
    """The file behind an SQLite URL; None for other databases and in-memory ones."""
    if not is_sqlite(url):
        return None
    # `sqlite+aiosqlite:///relative.db`, `sqlite+aiosqlite:////absolute.db`, `...?query`: the part after `///`
    _scheme, sep, rest = normalize_url(url).partition(":///")
    database = unquote(rest.split("?", 1)[0]) if sep else ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def make_sqlite_private(url: str) -> None:
    """Create the SQLite file 0600 before SQLite does (it gives `-wal`/`-shm` the file's mode) and tighten
    existing files: they hold phone numbers, names, notes and encrypted CRM tokens.
    """
    path = sqlite_file(url)
    if path is None:
        return
    # Never open an existing database file: closing any descriptor of it drops every POSIX lock this process
    # holds on it, and another process could then reset the WAL under our open connections.
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError:
        return  # a missing folder: SQLite reports it in its own words
    for companion in ("", "-wal", "-shm", "-journal", "-users"):
        candidate = path.with_name(path.name + companion)
        try:
            if candidate.stat().st_mode & 0o077:
                os.chmod(candidate, 0o600)
        except OSError:
            continue
