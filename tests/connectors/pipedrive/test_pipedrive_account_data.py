"""Pipedrive's activity types as account data, end to end against FakePipedrive over loopback HTTP.

The reference keeps the company's active activity types as account data (`GET /accountData?keys=activityTypes`
lists them for the admin's activity-type settings, refreshed on demand) and resolves a log's type from them.
Here they live in the server's account storage: one fetch serves every process and every log of the company
until the list is refreshed (on demand, when it no longer names the admin's type, or after a day).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fake_pipedrive import FakePipedrive
from test_pipedrive_e2e import Agent, call_body, extra_server

from tests.conftest import LiveServer, new_phone
from tests.support.e2e import client_of, server_beside_fixture

TYPES = "/v1/activityTypes"


#: A server on the session server's database and keys, set up for Pipedrive.
pd_server = server_beside_fixture("pipedrive-account-data", "_fake_pipedrive_server")


@pytest.fixture
def second_server(
    pd_server: LiveServer, fake_pipedrive: FakePipedrive, tmp_path: Path
) -> Iterator[LiveServer]:
    """Another process of the same deployment: same database and keys."""
    with extra_server(pd_server, fake_pipedrive, tmp_path) as live:
        yield live


@pytest.fixture
async def agent(pd_server: LiveServer, fake_pipedrive: FakePipedrive) -> AsyncIterator[Agent]:
    async with client_of(pd_server) as http:
        agent = Agent(http, pd_server, fake_pipedrive)
        await agent.login()
        yield agent


async def account_data(agent: Agent, query: str, http: httpx.AsyncClient | None = None) -> httpx.Response:
    return await (http or agent.http).get(f"/accountData?{query}", headers=agent.auth)


def fetches(fake: FakePipedrive) -> int:
    return len(fake.requests_to(TYPES, "GET"))


async def test_activity_types_are_kept_for_the_company(
    agent: Agent, fake_pipedrive: FakePipedrive, second_server: LiveServer
) -> None:
    fake = fake_pipedrive
    fake.set_activity_types([("Call", "call", True), ("Text message", "sms", True), ("Fax", "fax", False)])
    refreshed = await account_data(agent, "keys=activityTypes&forceRefresh=true")
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["successful"] is True
    assert refreshed.json()["data"] == {
        "activityTypes": [{"const": "call", "title": "Call"}, {"const": "sms", "title": "Text message"}]
    }
    fetched = fetches(fake)

    again = await account_data(agent, "keys=activityTypes")
    assert again.json()["data"] == refreshed.json()["data"]
    phone = new_phone()
    person = await agent.create_contact(phone, "Maya Patel")
    logged = await agent.log_call(call_body(f"s-{uuid.uuid4().hex}", str(person["contact"]["id"]), phone))
    assert logged.status_code == 200 and logged.json()["successful"] is True, logged.text
    [activity] = fake.activities.values()
    assert activity["type"] == "call"
    assert fetches(fake) == fetched  # the stored list served the settings page and the log

    # another process of the deployment (same database) reads the same stored list
    async with httpx.AsyncClient(base_url=second_server.base_url, timeout=30) as http:
        shared = await account_data(agent, "keys=activityTypes", http)
    assert shared.json()["data"] == refreshed.json()["data"]
    assert fetches(fake) == fetched

    fake.add_activity_type("Video call", "video")
    newer = await account_data(agent, "keys=activityTypes&forceRefresh=true")
    assert {"const": "video", "title": "Video call"} in newer.json()["data"]["activityTypes"]
    assert fetches(fake) == fetched + 1


async def test_a_failed_refresh_answers_the_stored_list(agent: Agent, fake_pipedrive: FakePipedrive) -> None:
    first = await account_data(agent, "keys=activityTypes&forceRefresh=true")
    assert first.json()["successful"] is True, first.text
    fake_pipedrive.inject(500, path_prefix=TYPES, method="GET", times=5)
    stale = await account_data(agent, "keys=activityTypes&forceRefresh=true")
    assert stale.status_code == 200, stale.text
    assert stale.json()["successful"] is True
    assert stale.json()["data"] == first.json()["data"]


async def test_an_unknown_key_is_refused(agent: Agent, fake_pipedrive: FakePipedrive) -> None:
    refused = await account_data(agent, "keys=activityTypes,stages")
    assert refused.status_code == 400
    assert "stages" in refused.text
    assert fetches(fake_pipedrive) == 0
