"""Fixtures: one FakeInsightly per test session, reset before every test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_insightly import FakeInsightly


@pytest.fixture(scope="session")
def _fake_insightly_server() -> Iterator[FakeInsightly]:
    with FakeInsightly() as fake:
        yield fake


@pytest.fixture
def fake_insightly(_fake_insightly_server: FakeInsightly) -> Iterator[FakeInsightly]:
    """A started fake with fresh state: one user (key `key-jordan`), no records.

    After the test, no answer of the fake may have broken Insightly's published description (trimmed copy).
    """
    _fake_insightly_server.reset()
    _fake_insightly_server.contract.violations.clear()
    yield _fake_insightly_server
    assert _fake_insightly_server.contract.violations == []
