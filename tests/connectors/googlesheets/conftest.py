"""Fixtures: one FakeGoogleSheets server per test session, reset before every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.connectors.googlesheets.fake_googlesheets import FakeGoogleSheets


@pytest.fixture(scope="session")
def _fake_google_server() -> Iterator[FakeGoogleSheets]:
    with FakeGoogleSheets() as fake:
        yield fake


@pytest.fixture
def fake_google(_fake_google_server: FakeGoogleSheets) -> FakeGoogleSheets:
    """A started fake with fresh state (one Google user, no spreadsheet)."""
    _fake_google_server.reset()
    return _fake_google_server
