"""`requestDefaults.timeoutSeconds` through the real server: a CRM slower than the configuration allows (and
faster than the server's own timeout) is given up on, and a create given up on is found by its marker, never
made twice.

One server serves two configurations of the same Relay CRM fake: `relayCrm` (`relay_crm.json`, 20 s, which the
server's 2 s read timeout caps) and `relayQuick` (the same file with 0.5 s). The same slow answer is read for
the first and given up on for the second: the configuration's timeout is what differs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, call_log_body, connector_server, database_url_for, new_phone
from tests.connectors.declarative.fake_rest_crm import FakeRelayCrm

RELAY = Path(__file__).with_name("relay_crm.json")
#: the quick configuration's timeout, and how long the fake takes: between it and the server's read timeout
QUICK_TIMEOUT = 0.5
SLOW_ANSWER = 1.2


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeRelayCrm]:
    with FakeRelayCrm() as crm:
        yield crm


@pytest.fixture(scope="module")
def server(fake: FakeRelayCrm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("declarative-timeout")
    quick = json.loads(RELAY.read_text())
    quick["meta"].update(name="relayQuick", displayName="Relay CRM (quick)")
    quick["requestDefaults"]["timeoutSeconds"] = QUICK_TIMEOUT
    quick_file = folder / "relay_quick.json"
    quick_file.write_text(json.dumps(quick))
    env = {
        "APPCONNECT_DECLARATIVE_CONNECTORS": f"{RELAY},{quick_file}",
        "RELAYCRM_BASE_URL": f"{fake.base_url}/v1",
        "RELAYQUICK_BASE_URL": f"{fake.base_url}/v1",
    }
    with connector_server(env, folder, database_url_for("sqlite", folder)) as live:
        assert live.settings.crm_read_timeout > SLOW_ANSWER  # the server alone would wait for the answer
        yield live


@contextmanager
def _logged_in(server: LiveServer, fake: FakeRelayCrm, platform: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        login = client.post(
            "/apiKeyLogin", json={"platform": platform, "apiKey": fake.default_key, "hostname": ""}
        )
        assert login.status_code == 200, login.text
        client.headers["Authorization"] = f"Bearer {login.json()['jwtToken']}"
        yield client


def _activities_of(fake: FakeRelayCrm, contact_id: str) -> list[str]:
    return [a["id"] for a in fake.all_activities() if a["contact_id"] == contact_id]


@pytest.mark.parametrize(("platform", "read"), [("relayCrm", True), ("relayQuick", False)])
def test_a_slow_lookup_is_read_only_within_the_configured_timeout(
    fake: FakeRelayCrm, server: LiveServer, platform: str, read: bool
) -> None:
    phone = new_phone()
    contact = fake.add_contact("Avery Stone", phone)
    with _logged_in(server, fake, platform) as client:
        fake.inject(delay=SLOW_ANSWER, times=20, path_prefix="/v1/contacts", method="GET")
        try:
            found = client.get("/contact", params={"phoneNumber": phone})
        finally:
            fake.clear_faults()
    assert found.status_code == 200, found.text
    answer = found.json()
    ids = [c["id"] for c in answer.get("contact") or [] if not c.get("isNewContact")]
    if read:
        assert answer["successful"] is True and ids == [contact["id"]], answer
    else:
        assert answer["successful"] is False and ids == [], answer
        assert "did not answer in time" in json.dumps(answer["returnMessage"]), answer


def test_a_create_slower_than_the_configured_timeout_is_found_by_its_marker_not_made_twice(
    fake: FakeRelayCrm, server: LiveServer
) -> None:
    phone = new_phone()
    contact = fake.add_contact("Rowan Hale", phone)
    body = call_log_body(f"s-{uuid.uuid4().hex[:10]}", contact["id"], phone)
    creates = len(fake.requests_to("/v1/activities", "POST"))
    with _logged_in(server, fake, "relayQuick") as client:
        # the fake creates the activity, then answers after the configuration's timeout
        fake.inject(delay=SLOW_ANSWER, path_prefix="/v1/activities", method="POST", when="after")
        first = client.post("/callLog", json=body)
        assert first.status_code == 200, first.text
        assert first.json()["successful"] is False, first.text
        [made] = _activities_of(fake, contact["id"])
        searches = len(fake.requests_to("/v1/activities", "GET"))

        retried = client.post("/callLog", json=body)
    assert retried.status_code == 200, retried.text
    assert retried.json()["successful"] is True and str(retried.json()["logId"]) == made, retried.text
    assert _activities_of(fake, contact["id"]) == [made]
    assert len(fake.requests_to("/v1/activities", "GET")) > searches  # the marker search found it
    assert len(fake.requests_to("/v1/activities", "POST")) == creates + 1


def test_the_same_slow_create_is_logged_at_once_under_the_servers_own_timeout(
    fake: FakeRelayCrm, server: LiveServer
) -> None:
    phone = new_phone()
    contact = fake.add_contact("Quinn Ellis", phone)
    body = call_log_body(f"s-{uuid.uuid4().hex[:10]}", contact["id"], phone)
    with _logged_in(server, fake, "relayCrm") as client:
        fake.inject(delay=SLOW_ANSWER, path_prefix="/v1/activities", method="POST", when="after")
        logged = client.post("/callLog", json=body)
    assert logged.status_code == 200 and logged.json()["successful"] is True, logged.text
    assert _activities_of(fake, contact["id"]) == [str(logged.json()["logId"])]
