"""Fixtures: one FakeBullhorn server per test session, reset before every test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_bullhorn import FakeBullhorn


@pytest.fixture(scope="session")
def _fake_bullhorn_server() -> Iterator[FakeBullhorn]:
    with FakeBullhorn() as fake:
        yield fake


@pytest.fixture
def fake_bullhorn(_fake_bullhorn_server: FakeBullhorn) -> FakeBullhorn:
    """A started fake with fresh state (one corporation in the east data centre, one user, no records)."""
    _fake_bullhorn_server.reset()
    return _fake_bullhorn_server
