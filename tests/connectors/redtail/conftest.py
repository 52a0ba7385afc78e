"""Fixtures: one FakeRedtail per test session, reset before every test; a connector server pointed at it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_redtail import FakeRedtail
from redtail_agent import Agent

from tests.conftest import LiveServer
from tests.support.e2e import client_of, server_beside_fixture


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


#: a second server on the session server's database and keys, set up for Redtail (rate limiter off, so an
#: injected 429 leaves no back-off behind for the next test)
rt_server = server_beside_fixture("redtail", "_fake_redtail_server", crm_rate_limit="off")


@pytest.fixture
async def agent(rt_server: LiveServer, fake_redtail: FakeRedtail) -> AsyncIterator[Agent]:
    async with client_of(rt_server) as http:
        yield Agent(http, rt_server, fake_redtail)


@pytest.fixture
async def logged_in(agent: Agent) -> Agent:
    response = await agent.login()
    assert response.status_code == 200, response.text
    return agent
