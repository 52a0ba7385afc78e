"""Pipedrive's rate limits through the real server over loopback HTTP, with its default settings.

The fake enforces what Pipedrive documents (80 calls per 2 s per OAuth token, its search endpoints 10 per 2 s
per token) and sends its `x-ratelimit-*` headers. An office is several Pipedrive users of one company, each
logged in with a token of their own. Each test gives the fake a company of its own, so a company-wide back-off
one test provokes is not met by another test on the same database.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fake_pipedrive import FakePipedrive

from tests.conftest import LiveServer, call_log_body, new_phone
from tests.support.e2e import server_beside_fixture

JsonDict = dict[str, Any]
SEARCH = "/api/v2/persons/search"


#: A server on the session server's database and keys, the rate limiter at its defaults.
limits_server = server_beside_fixture("pipedrive-limits", "_fake_pipedrive_server", scope="module")


@pytest.fixture
def office(fake_pipedrive: FakePipedrive) -> FakePipedrive:
    """The fake with a company no other test uses."""
    fake_pipedrive.user["company_id"] = random.randint(100_000, 999_999_999)
    return fake_pipedrive


@pytest.fixture
async def http(limits_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=limits_server.base_url, timeout=60) as client:
        yield client


async def log_in(http: httpx.AsyncClient, fake: FakePipedrive, user_id: int) -> str:
    """One agent's OAuth install: a user of the office's company, with a token of their own."""
    fake.add_colleague(user_id, f"Agent {user_id}")
    code = fake.issue_code(user_id=user_id)
    response = await http.get(
        "/oauth-callback",
        params={
            "callbackUri": f"{fake.redirect_uri}?code={code}&state=platform%3Dpipedrive",
            "hostname": "temp",
            "rcAccountId": f"rc-{uuid.uuid4().hex[:10]}",
        },
    )
    assert response.status_code == 200, response.text
    jwt: str = response.json()["jwtToken"]
    return jwt


async def lookup(http: httpx.AsyncClient, jwt: str, phone: str) -> JsonDict:
    response = await http.get(
        "/contact", params={"phoneNumber": phone}, headers={"Authorization": f"Bearer {jwt}"}
    )
    assert response.status_code == 200, response.text
    body: JsonDict = response.json()
    return body


async def placeholder_flow(http: httpx.AsyncClient, jwt: str) -> list[JsonDict]:
    """What the client does for a caller the CRM does not know: look up, create the contact, log the call."""
    auth = {"Authorization": f"Bearer {jwt}"}
    phone = new_phone()
    found = await lookup(http, jwt, phone)
    created = await http.post(
        "/contact",
        headers=auth,
        json={"phoneNumber": phone, "newContactName": "Maya Patel", "newContactType": ""},
    )
    assert created.status_code == 200, created.text
    contact_id = str(created.json().get("contact", {}).get("id", ""))
    session_id = f"s-{uuid.uuid4().hex}"
    logged = await http.post("/callLog", headers=auth, json=call_log_body(session_id, contact_id, phone))
    assert logged.status_code == 200, logged.text
    return [found, created.json(), logged.json()]


def failures(answers: list[JsonDict]) -> list[str]:
    return [str(a.get("returnMessage")) for a in answers if a.get("successful") is not True]


async def test_an_office_of_32_agents_runs_its_burst_without_a_failure(
    http: httpx.AsyncClient, office: FakePipedrive
) -> None:
    """32 agents of one company each run the placeholder flow at once: every call is within what Pipedrive
    accepts (each token has its own budget), so none may fail (one shared company budget failed most)."""
    jwts = [await log_in(http, office, 50_000 + n) for n in range(32)]
    flows = await asyncio.gather(*(placeholder_flow(http, jwt) for jwt in jwts))
    answers = [answer for flow in flows for answer in flow]
    assert failures(answers) == []
    assert len(office.persons) == 32
    assert len(office.activities) == 32


async def test_one_agents_burst_past_the_search_limit_waits_instead_of_failing(
    http: httpx.AsyncClient, office: FakePipedrive
) -> None:
    """15 lookups of one token at once, 10 searches per 2 s allowed: the rest wait for Pipedrive's next window
    (the headers of its answers say when), none fails. (A queue longer than `MAX_WAIT_SECONDS` of windows is
    refused: 32 searches of one token need 6 s of Pipedrive's windows.)"""
    jwt = await log_in(http, office, 60_001)
    answers = await asyncio.gather(*(lookup(http, jwt, new_phone()) for _ in range(15)))
    assert failures(answers) == []
    assert len(office.requests_to(SEARCH)) >= 15


async def test_a_long_429_backs_the_company_off_and_pipedrive_is_not_called(
    http: httpx.AsyncClient, office: FakePipedrive
) -> None:
    """A Retry-After of a minute is no 2-second burst window: the company's daily budget ran out, so no agent
    of the company calls Pipedrive until it passes; they are told the rate limit was reached."""
    first = await log_in(http, office, 70_001)
    second = await log_in(http, office, 70_002)
    office.inject(status=429, retry_after=60, path_prefix=SEARCH)
    refused = await lookup(http, first, new_phone())
    assert refused["successful"] is False
    assert refused["returnMessage"]["message"] == "Rate limit exceeded"
    searches = len(office.requests_to(SEARCH))
    also_refused = await lookup(http, second, new_phone())
    assert also_refused["returnMessage"]["message"] == "Rate limit exceeded"
    assert len(office.requests_to(SEARCH)) == searches  # the CRM was not asked


async def test_a_short_429_is_waited_out_by_that_token(
    http: httpx.AsyncClient, office: FakePipedrive
) -> None:
    """Pipedrive answers 429 with Retry-After 1: the server waits it out and the lookup succeeds."""
    jwt = await log_in(http, office, 80_001)
    office.inject(status=429, retry_after=1, path_prefix=SEARCH)
    found = await lookup(http, jwt, new_phone())
    assert found["successful"] is True
    assert len(office.requests_to(SEARCH)) == 2
