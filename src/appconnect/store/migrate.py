"""Create or upgrade the database schema (`appconnect migrate`); also run by `serve` before workers start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from appconnect.store.db import normalize_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalize_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema to `revision`. Blocking: call it from a thread or before the event loop starts."""
    command.upgrade(alembic_config(database_url), revision)
