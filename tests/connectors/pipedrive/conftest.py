"""Fixtures: one FakePipedrive server per test session, reset before every test, plus ready-made tokens."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_pipedrive import FakePipedrive, TokenPair


@pytest.fixture(scope="session")
def _fake_pipedrive_server() -> Iterator[FakePipedrive]:
    with FakePipedrive() as fake:
        yield fake


@pytest.fixture
def fake_pipedrive(_fake_pipedrive_server: FakePipedrive) -> Iterator[FakePipedrive]:
    """A started fake with fresh state (default user, activity types, no persons).

    After the test, no answer of the fake may have broken Pipedrive's v2 description (trimmed copy).
    """
    _fake_pipedrive_server.reset()
    _fake_pipedrive_server.contract.violations.clear()
    yield _fake_pipedrive_server
    assert _fake_pipedrive_server.contract.violations == []


@pytest.fixture
def pipedrive_tokens(fake_pipedrive: FakePipedrive) -> TokenPair:
    """A valid access/refresh pair issued by the fake."""
    return fake_pipedrive.issue_tokens()


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client
