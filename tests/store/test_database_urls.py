"""Database URLs: the default names the SQLite file plainly (the SQLAlchemy-era `sqlite+aiosqlite:` form still
works), and the pool's connect options in a PostgreSQL URL never reach SQLAlchemy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from appconnect.settings import Settings
from appconnect.store.migrate import upgrade
from appconnect.store.sql import open_database, sql
from appconnect.store.urls import is_sqlite, normalize_url, split_connect_options, sqlite_file


def test_the_default_database_is_a_plain_sqlite_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APPCONNECT_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == "sqlite:///./appconnect.sqlite3"
    assert sqlite_file(settings.database_url) == Path("appconnect.sqlite3")


@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+aiosqlite"])
def test_both_sqlite_forms_name_the_same_file_and_work(tmp_path: Path, scheme: str) -> None:
    url = f"{scheme}:///{tmp_path / 'app.sqlite3'}"
    assert is_sqlite(url) and sqlite_file(url) == tmp_path / "app.sqlite3"
    upgrade(url)

    async def count_users() -> int:
        database = open_database(url, max_connections=1, acquire_timeout=1)
        try:
            row = await database.one(sql("SELECT count(*) AS n FROM users"))
        finally:
            await database.close()
        assert row is not None
        return int(row["n"])

    assert asyncio.run(count_users()) == 0


def test_the_pools_options_are_taken_out_of_what_sqlalchemy_sees() -> None:
    url = "postgresql://app@db:5432/main?sslmode=require&application_name=eu&statement_cache_size=0"
    assert normalize_url(url) == "postgresql+asyncpg://app@db:5432/main?sslmode=require"
    assert split_connect_options(url) == (
        "postgresql://app@db:5432/main?sslmode=require",
        {"application_name": "eu", "statement_cache_size": "0"},
    )
    assert (
        normalize_url("postgres://app@db/main?statement_timeout=5000") == "postgresql+asyncpg://app@db/main"
    )


def test_a_url_option_that_is_not_a_number_is_a_settings_error_without_the_password() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(database_url="postgresql://app:secret@db/main?statement_timeout=soon")
    [error] = refused.value.errors()
    assert "statement_timeout" in error["msg"] and "secret" not in error["msg"]
