"""A declarative connector reading odd CRM answers, through the real server: whatever the CRM answers, the
user gets an answer the server could write (never a 500)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, call_log_body, connector_server, database_url_for, new_phone
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
def test_a_contact_nested_past_what_an_answer_may_hold_is_a_clear_error_not_a_500(
    fake: FakeRelayCrm, server: LiveServer, odd: str, caplog: pytest.LogCaptureFixture
) -> None:
    """JSON nested a few hundred levels is valid JSON, but more than the server's own answers may hold: the
    outbound client refuses to read it (for every connector), so the lookup is the contract's error answer."""
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
        with caplog.at_level(logging.WARNING, logger="appconnect"):
            found = client.get(
                "/contact",
                params={"phoneNumber": "+14156620177"},
                headers={"Authorization": f"Bearer {login.json()['jwtToken']}"},
            )
    assert found.status_code == 200, found.text
    answer = found.json()
    assert answer["successful"] is False
    assert answer["returnMessage"]["message"] == "Error finding contact"
    assert "relayCrm answered something unexpected" in found.text
    assert "more" not in found.text  # nothing of the deep part is answered
    assert [c for c in answer.get("contact") or [] if not c.get("isNewContact")] == []
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert any("nested deeper than 128 levels" in r.getMessage() for r in caplog.records)


def test_a_create_answered_nested_too_deep_is_found_by_its_marker_not_made_twice(
    fake: FakeRelayCrm, server: LiveServer
) -> None:
    """The CRM made the activity and answered JSON too deep to read: the outcome is unknown (a write had been
    answered), so the client's retry asks the marker search instead of creating a second one."""
    fake.reset()
    phone = new_phone()
    contact = fake.add_contact("Rowan Hale", phone)
    body = call_log_body(f"s-{uuid.uuid4().hex[:10]}", contact["id"], phone)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        login = client.post(
            "/apiKeyLogin", json={"platform": "relayCrm", "apiKey": fake.default_key, "hostname": ""}
        )
        assert login.status_code == 200, login.text
        client.headers["Authorization"] = f"Bearer {login.json()['jwtToken']}"
        fake.inject(201, path_prefix="/v1/activities", method="POST", when="after", body=_nested(300))
        first = client.post("/callLog", json=body)
        assert first.status_code == 200 and first.json()["successful"] is False, first.text
        assert "It may have been saved in relayCrm" in first.text  # a write had been answered
        [made] = [a["id"] for a in fake.all_activities() if a["contact_id"] == contact["id"]]
        retried = client.post("/callLog", json=body)
    assert retried.status_code == 200, retried.text
    assert retried.json()["successful"] is True and str(retried.json()["logId"]) == made, retried.text
    assert [a["id"] for a in fake.all_activities() if a["contact_id"] == contact["id"]] == [made]
