"""A production worker (test CRM off, SQLite or PostgreSQL, no Redis) loads neither SQLAlchemy nor Alembic, nor
FastAPI, httpx, aiohttp or PyJWT: what it imports is what it holds in memory for its whole life."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHECK = """
import sys
from appconnect.api.app import create_app
from appconnect.settings import Settings
app = create_app(Settings(database_url=sys.argv[1], key_file=sys.argv[2], embedded_testcrm=False))
unwanted = {"sqlalchemy", "alembic", "fastapi", "httpx", "aiohttp", "jwt"}
loaded = sorted({name.split(".")[0] for name in sys.modules} & unwanted)
print(",".join(loaded))
"""


@pytest.mark.parametrize(
    "url", ["sqlite:///{folder}/app.sqlite3", "postgresql://postgres@127.0.0.1:5432/unused"]
)
def test_a_worker_imports_no_orm_migrations_or_spare_http_stack(tmp_path: Path, url: str) -> None:
    database_url = url.format(folder=tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", CHECK, database_url, str(tmp_path / "keys.json")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"a worker imported {done.stdout.strip()}"
