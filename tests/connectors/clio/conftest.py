"""Fixtures: one FakeClio server per test session, reset before every test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_clio import FakeClio


@pytest.fixture(scope="session")
def _fake_clio_server() -> Iterator[FakeClio]:
    with FakeClio() as fake:
        yield fake


@pytest.fixture
def fake_clio(_fake_clio_server: FakeClio) -> FakeClio:
    """A started fake with fresh state (the default user, no contacts)."""
    _fake_clio_server.reset()
    return _fake_clio_server
