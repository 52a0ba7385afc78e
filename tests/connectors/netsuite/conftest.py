"""Fixtures: one FakeNetSuite server per test session, reset before every test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_netsuite import FakeNetSuite


@pytest.fixture(scope="session")
def _fake_netsuite_server() -> Iterator[FakeNetSuite]:
    with FakeNetSuite() as fake:
        yield fake


@pytest.fixture
def fake_netsuite(_fake_netsuite_server: FakeNetSuite) -> FakeNetSuite:
    """A started fake with fresh state (two accounts, one employee each, no contacts)."""
    _fake_netsuite_server.reset()
    return _fake_netsuite_server
