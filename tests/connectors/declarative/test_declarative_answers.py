"""A declarative connector reading odd CRM answers, through the real server: whatever the CRM answers, the
user gets an answer the server could write (never a 500)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, connector_server, database_url_for
from tests.connectors.declarative.fake_rest_crm import FakeRelayCrm

RELAY = Path(__file__).with_name("relay_crm.json")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeRelayCrm]:
    with FakeRelayCrm() as crm:
        yield crm


@pytest.fixture(scope="module")
def server(fake: FakeRelayCrm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("declarative-answers")
    env = {"APPCONNECT_DECLARATIVE_CONNECTORS": str(RELAY), "RELAYCRM_BASE_URL": f"{fake.base_url}/v1"}
    with connector_server(env, folder, database_url_for("sqlite", folder)) as live:
        yield live


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"more": value}
    return value


@pytest.mark.parametrize("odd", ["deep additional info", "deep name"])
def test_a_contact_nested_past_what_an_answer_may_hold_is_no_500(
    fake: FakeRelayCrm, server: LiveServer, odd: str
) -> None:
    """JSON nested a few hundred levels is valid JSON the server reads, but more than its own answers may
    hold: read as a contact's extra details (or its name), it must not break the server's answer."""
    fake.reset()
    contact: dict[str, Any] = {"id": "c-1", "name": "Avery Stone", "phone": "+14156620177", "kind": "contact"}
    if odd == "deep additional info":
        contact["additionalInfo"] = _nested(300)
    else:
        contact["name"] = [_nested(300)]
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        login = client.post(
            "/apiKeyLogin", json={"platform": "relayCrm", "apiKey": fake.default_key, "hostname": ""}
        )
        assert login.status_code == 200, login.text
        fake.inject(200, times=2, path_prefix="/v1/contacts", method="GET", body={"contacts": [contact]})
        found = client.get(
            "/contact",
            params={"phoneNumber": "+14156620177"},
            headers={"Authorization": f"Bearer {login.json()['jwtToken']}"},
        )
    assert found.status_code == 200, found.text
    [match] = [c for c in found.json()["contact"] if not c.get("isNewContact")]
    assert match["id"] == "c-1"
    assert "more" not in str(match.get("additionalInfo") or "")  # the deep part is left out, not answered
