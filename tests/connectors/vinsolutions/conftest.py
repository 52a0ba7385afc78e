"""Fixtures: one FakeVinSolutions per test session, reset before every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.connectors.vinsolutions.fake_vinsolutions import FakeVinSolutions


@pytest.fixture(scope="session")
def _fake_vinsolutions_server() -> Iterator[FakeVinSolutions]:
    with FakeVinSolutions() as fake:
        yield fake


@pytest.fixture
def fake_vinsolutions(_fake_vinsolutions_server: FakeVinSolutions) -> FakeVinSolutions:
    """A started fake with fresh state: two enabled dealers, user 13001 in each, no contacts."""
    _fake_vinsolutions_server.reset()
    return _fake_vinsolutions_server
