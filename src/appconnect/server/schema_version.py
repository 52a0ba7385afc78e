"""Is the database schema already at the newest migration? Answered without Alembic or SQLAlchemy.

`serve` asks this on every start; only a "no" (or any doubt) pays for importing Alembic and running it.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from urllib.parse import quote

from appconnect.store.revisions import head_revision
from appconnect.store.urls import normalize_url


def _sqlite_path(url: str) -> str | None:
    """The file of an `sqlite[+driver]:///path` URL; None for memory, `file:` URIs or query options."""
    scheme, _, rest = url.partition("://")
    if not scheme.startswith("sqlite") or not rest.startswith("/") or "?" in rest:
        return None
    path = rest[1:]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


def _sqlite_versions(path: str) -> list[str]:
    # read-only: never creates the file, never changes its mode
    with closing(sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=5)) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


def _postgres_versions(url: str) -> list[str] | None:
    scheme, _, rest = url.partition("://")
    if scheme not in ("postgres", "postgresql", "postgresql+asyncpg") or "?" in rest:
        return None
    import asyncio

    import asyncpg  # type: ignore[import-untyped]

    async def fetch() -> list[str]:
        conn = await asyncpg.connect(f"postgresql://{rest}", timeout=5)
        try:
            return [row[0] for row in await conn.fetch("SELECT version_num FROM alembic_version")]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def schema_is_current(database_url: str) -> bool:
    """True only when the database's `alembic_version` is exactly the head revision; any error is a "no"."""
    head = head_revision()
    if head is None:
        return False
    database_url = normalize_url(database_url)  # without the options only the server's pool reads
    try:
        path = _sqlite_path(database_url)
        if path is not None:
            return _sqlite_versions(path) == [head]
        versions = _postgres_versions(database_url)
    except Exception:  # missing file, table or database, refused connection: let Alembic look and explain
        return False
    return versions == [head]
