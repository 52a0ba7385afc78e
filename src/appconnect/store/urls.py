"""Database URLs: which database, which file; without importing SQLAlchemy (a worker never needs it)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote


def normalize_url(url: str) -> str:
    """Accept plain `sqlite:`/`postgres:` URLs and pick the async driver."""
    if url.startswith("sqlite:///") or url.startswith("sqlite://"):
        return "sqlite+aiosqlite" + url[len("sqlite") :]
    if url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    return url


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
