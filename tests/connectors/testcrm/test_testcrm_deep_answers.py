"""A code connector passing a CRM answer nested too deep into its reply, through the real server.

The test CRM connector hands the activity it reads back as the log's `fullLogResponse`: an activity whose JSON
nests past what the server's JSON writer takes made `GET /callLog?requireDetails=true` a 500. The outbound
client's JSON read now refuses such an answer for every connector, so the client gets the contract's answer
with the CRM error message, and the log holds a warning, no traceback. The CRM's answer is replaced on its way
by a hostile proxy (the server's `HTTP_PROXY`); the test CRM itself is untouched.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    LiveServer,
    call_log_body,
    connector_server,
    crm_admin_headers,
    database_url_for,
    new_phone,
)
from tests.connectors.conformance.target import api_key_login
from tests.support.hostile_proxy import Canned, HostileProxy


@dataclass
class Proxied:
    server: LiveServer
    proxy: HostileProxy


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    folder: Path = tmp_path_factory.mktemp("testcrm-deep")
    proxy = HostileProxy()
    proxy.start()
    env = {"HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "NO_PROXY": "", "no_proxy": ""}
    try:
        with connector_server(
            env, folder, database_url_for("sqlite", folder), embedded_testcrm=True, crm_rate_limit="off"
        ) as live:
            yield Proxied(live, proxy)
    finally:
        proxy.stop()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


@pytest.mark.parametrize("depth", [300, 100_000])
async def test_a_logged_call_read_back_nested_too_deep_is_the_contracts_error_answer(
    proxied: Proxied, depth: int, caplog: pytest.LogCaptureFixture
) -> None:
    server, proxy = proxied.server, proxied.proxy
    proxy.clear()
    with httpx.Client(base_url=f"{server.base_url}/testcrm/api/v1", timeout=15) as crm:
        minted = crm.post(
            "/api-keys", json={"name": f"Agent {uuid.uuid4().hex[:6]}"}, headers=crm_admin_headers()
        )
        assert minted.status_code in (200, 201), minted.text
        api_key = minted.json()["apiKey"]
        phone = new_phone()
        seeded = crm.post(
            "/contacts",
            json={"name": "Maya Patel", "type": "contact", "phones": [{"number": phone}]},
            auth=(api_key, ""),
        )
        assert seeded.status_code == 201, seeded.text
    session_id = f"deep-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        jwt = await api_key_login(client, "testcrm", api_key, hostname="testcrm.local")
        auth = {"Authorization": f"Bearer {jwt}"}
        logged = await client.post(
            "/callLog", json=call_log_body(session_id, seeded.json()["id"], phone), headers=auth
        )
        assert logged.status_code == 200 and logged.json()["successful"] is True, logged.text
        log_id = str(logged.json()["logId"])

        deep = b'{"id":"%s","subject":"Call","body":"Note","extra":%s}' % (log_id.encode(), nested(depth))
        rule = proxy.answer("GET", "/testcrm/api/v1/activities/", Canned(200, "application/json", deep))
        with caplog.at_level(logging.WARNING, logger="appconnect"):
            read = await client.get(
                "/callLog", params={"sessionIds": session_id, "requireDetails": "true"}, headers=auth
            )
        proxy.clear()
    assert rule.hits == 1  # the server's read of the activity got the deep answer
    assert read.status_code == 200, read.text
    answer = read.json()
    [entry] = answer["logs"]
    assert entry["matched"] is True and str(entry["logId"]) == log_id and "logData" not in entry, answer
    assert answer["returnMessage"]["message"] == "Error getting call log"
    assert "testcrm answered something unexpected" in read.text
    assert "[[[" not in read.text and "Traceback" not in read.text
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert any("nested deeper than 128 levels" in r.getMessage() for r in caplog.records)
