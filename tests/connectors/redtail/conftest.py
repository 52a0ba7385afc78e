"""Fixtures: one FakeRedtail per test session, reset before every test; a connector server pointed at it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_redtail import FakeRedtail
from redtail_agent import Agent

from tests.conftest import LiveServer, connector_server


@pytest.fixture(scope="session")
def _fake_redtail_server() -> Iterator[FakeRedtail]:
    with FakeRedtail() as fake:
        yield fake


@pytest.fixture
def fake_redtail(_fake_redtail_server: FakeRedtail) -> FakeRedtail:
    """A started fake with fresh state (one user, stock categories, no contacts)."""
    _fake_redtail_server.reset()
    _fake_redtail_server.per_page = 50
    return _fake_redtail_server


def redtail_server(
    fake: FakeRedtail, folder: Path, database_url: str, **overrides: Any
) -> AbstractContextManager[LiveServer]:
    """A connector server whose Redtail connector talks to `fake` (settings are read at app build)."""
    return connector_server(fake.env(), folder, database_url, **overrides)


@pytest.fixture(scope="session")
def rt_server(
    server: LiveServer, _fake_redtail_server: FakeRedtail, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A second server on the session server's database and keys, set up for Redtail (rate limiter off, so an
    injected 429 leaves no back-off behind for the next test)."""
    folder = tmp_path_factory.mktemp("redtail-server")
    with redtail_server(
        _fake_redtail_server,
        folder,
        server.settings.database_url,
        key_file=server.settings.key_file,
        crm_rate_limit="off",
    ) as live:
        yield live


@pytest.fixture
async def agent(rt_server: LiveServer, fake_redtail: FakeRedtail) -> AsyncIterator[Agent]:
    async with httpx.AsyncClient(base_url=rt_server.base_url, timeout=30) as http:
        yield Agent(http, rt_server, fake_redtail)


@pytest.fixture
async def logged_in(agent: Agent) -> Agent:
    response = await agent.login()
    assert response.status_code == 200, response.text
    return agent
