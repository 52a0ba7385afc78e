"""Simultaneous requests: one contact per number, one activity per call session, one per conversation."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import CrmView, LiveServer, call_log_body, new_phone


async def burst(
    server: LiveServer, count: int, method: str, path: str, jwt: str, bodies: list[dict[str, object]]
) -> list[dict[str, object]]:
    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=60, limits=httpx.Limits(max_connections=count)
    ) as http:
        responses = await asyncio.gather(
            *[
                http.request(
                    method, path, json=bodies[i % len(bodies)], headers={"Authorization": f"Bearer {jwt}"}
                )
                for i in range(count)
            ]
        )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    return [r.json() for r in responses]


async def test_twenty_simultaneous_placeholder_creations_make_one_contact(
    server: LiveServer, jwt: str, crm: CrmView
) -> None:
    phone = new_phone()
    bodies = [
        {"phoneNumber": phone, "newContactName": f"Racer {i}", "newContactType": "contact"} for i in range(20)
    ]
    results = await burst(server, 20, "POST", "/contact", jwt, bodies)
    assert all(r["successful"] is True for r in results)
    ids = {r["contact"]["id"] for r in results}  # type: ignore[index]
    assert len(ids) == 1
    stored = crm.contacts_with_phone(phone)
    assert len(stored) == 1 and str(stored[0]["id"]) in ids
    assert crm.received("/api/v1/contacts", phone=phone) == 1  # what the server sent, not only what was kept


async def test_twenty_simultaneous_call_logs_make_one_activity(
    server: LiveServer, jwt: str, crm: CrmView, client: httpx.Client
) -> None:
    phone = new_phone()
    contact = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Busy Line", "newContactType": "contact"},
        headers={"Authorization": f"Bearer {jwt}"},
    ).json()["contact"]
    session = f"race-{phone}"
    results = await burst(server, 20, "POST", "/callLog", jwt, [call_log_body(session, contact["id"], phone)])
    winners = [r for r in results if r["successful"]]
    assert len(winners) == 1
    losers = [r for r in results if not r["successful"]]
    assert all(r["returnMessage"]["message"] == f"Existing log for session {session}" for r in losers)  # type: ignore[index]
    activities = crm.activities_of(contact["id"])
    assert len(activities) == 1 and str(activities[0]["id"]) == winners[0]["logId"]
    assert crm.received("/api/v1/activities") == 1


async def test_simultaneous_messages_of_one_conversation_share_one_activity(
    server: LiveServer, jwt: str, crm: CrmView, client: httpx.Client
) -> None:
    phone = new_phone()
    contact = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Texter", "newContactType": "contact"},
        headers={"Authorization": f"Bearer {jwt}"},
    ).json()["contact"]
    bodies: list[dict[str, object]] = [
        {
            "logInfo": {
                "conversationId": f"c{phone}",
                "conversationLogId": f"c{phone}-2026-11-25",
                "messages": [
                    {
                        "id": f"m{i}-{phone}",
                        "subject": f"message number {i}",
                        "direction": "Inbound",
                        "creationTime": f"2026-11-25T10:{i:02d}:00Z",
                        "from": {"phoneNumber": phone},
                    }
                ],
                "correspondents": [{"phoneNumber": phone}],
            },
            "contactId": contact["id"],
            "contactName": "Texter",
        }
        for i in range(8)
    ]
    results = await burst(server, 8, "POST", "/messageLog", jwt, bodies)
    assert all(r["successful"] is True for r in results)
    activities = crm.activities_of(contact["id"])
    assert len(activities) == 1
    assert crm.received("/api/v1/activities") == 1  # one create, then appends
    for i in range(8):
        assert f"message number {i}" in str(activities[0]["body"])
