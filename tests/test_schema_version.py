"""`serve`'s quick "is the schema at head?" (no Alembic import) agrees with Alembic, on SQLite and PostgreSQL,
and never creates or touches a database file."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from appconnect.server.schema_version import head_revision, schema_is_current
from appconnect.store.migrate import alembic_config, upgrade
from tests.conftest import database_url_for


def test_the_head_read_from_the_migration_files_is_alembics_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite:///unused.sqlite3"))
    assert head_revision() == script.get_current_head()


def test_a_missing_sqlite_file_is_not_current_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "appconnect.sqlite3"
    assert schema_is_current(f"sqlite+aiosqlite:///{path}") is False
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_current_only_at_head(tmp_path: Path, backend: str) -> None:
    url = database_url_for(backend, tmp_path)
    assert schema_is_current(url) is False  # empty database
    script = ScriptDirectory.from_config(alembic_config(url))
    head = script.get_current_head()
    assert head is not None
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    upgrade(url, previous)
    assert schema_is_current(url) is False
    upgrade(url)
    assert schema_is_current(url) is True
