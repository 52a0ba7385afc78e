"""The released client's whole sequence: log in, miss, create the placeholder contact, log, update, log out."""

from __future__ import annotations

import httpx

from tests.conftest import CrmView, LiveServer, call_log_body, new_phone


def test_full_client_sequence_creates_one_contact_and_one_call(
    server: LiveServer, client: httpx.Client, crm_api_key: str, crm: CrmView
) -> None:
    manifest = client.get("/crmManifest", params={"platformName": "testcrm"}).json()
    testcrm = manifest["platforms"]["testcrm"]
    assert manifest["serverUrl"] == server.base_url
    assert [t["value"] for t in testcrm["contactTypes"]] == ["contact", "lead"]

    login = client.post(
        "/apiKeyLogin?state=platform=testcrm",
        json={"platform": "testcrm", "apiKey": crm_api_key, "hostname": "testcrm.local"},
    )
    assert login.status_code == 200
    jwt = login.json()["jwtToken"]
    assert login.json()["returnMessage"]["messageType"] == "success"

    phone = new_phone()
    session_id = f"s-{phone[1:]}"
    # the released client puts the JWT in the query and does not URL-encode the phone number's "+"
    none_logged = client.get(f"/callLog?sessionIds={session_id}&requireDetails=false&jwtToken={jwt}").json()
    assert none_logged == {
        "successful": True,
        "logs": [{"sessionId": session_id, "matched": False}],
    }

    lookup = client.get(
        f"/contact?phoneNumber={phone}&overridingFormat=&isExtension=false"
        f"&isForceRefreshAccountData=false&jwtToken={jwt}"
    ).json()
    assert lookup["successful"] is True
    assert lookup["returnMessage"]["message"] == "Contact not found"
    assert lookup["contact"] == [
        {
            "id": "createNewContact",
            "name": "Create new contact...",
            "additionalInfo": None,
            "isNewContact": True,
            "defaultContactType": "contact",
        }
    ]

    created = client.post(
        f"/contact?jwtToken={jwt}",
        json={
            "phoneNumber": phone,
            "newContactName": "Ada Placeholder",
            "newContactType": "lead",
            "additionalSubmission": {},
        },
    ).json()
    assert created["successful"] is True
    contact = created["contact"]
    assert contact["name"] == "Ada Placeholder" and contact["type"] == "lead"

    logged = client.post(
        f"/callLog?jwtToken={jwt}",
        json=call_log_body(
            session_id, contact["id"], phone, contactName="Ada Placeholder", contactType="lead"
        ),
    ).json()
    assert logged["successful"] is True, logged
    log_id = logged["logId"]

    matched = client.get(f"/callLog?sessionIds={session_id}&jwtToken={jwt}").json()
    assert matched["logs"] == [{"sessionId": session_id, "matched": True, "logId": log_id}]

    patched = client.patch(
        f"/callLog?jwtToken={jwt}",
        json={
            "sessionId": session_id,
            "note": "updated note",
            "duration": 125,
            "result": "Call connected",
            "recordingLink": "https://media.example/rec/1",
        },
    ).json()
    assert patched["successful"] is True and patched["logId"] == log_id

    sms = client.post(
        f"/messageLog?jwtToken={jwt}",
        json={
            "logInfo": {
                "conversationId": "conv-1",
                "conversationLogId": f"conv-1-{phone}-2026-11-25",
                "messages": [
                    {
                        "id": f"m-{phone}",
                        "type": "SMS",
                        "direction": "Inbound",
                        "subject": "hi there",
                        "creationTime": "2026-11-25T10:05:00.000Z",
                        "from": {"phoneNumber": phone},
                    }
                ],
                "correspondents": [{"phoneNumber": phone, "name": "Ada Placeholder"}],
            },
            "contactId": contact["id"],
            "contactName": "Ada Placeholder",
            "contactType": "lead",
        },
    ).json()
    assert sms["successful"] is True and sms["logIds"] == [f"m-{phone}"]

    found = client.get(
        f"/contact?phoneNumber={phone}&overridingFormat=&isExtension=false"
        f"&isForceRefreshAccountData=false&jwtToken={jwt}"
    ).json()
    assert found["successful"] is True
    assert found["contact"][0]["id"] == contact["id"]
    assert found["contact"][0]["name"] == "Ada Placeholder"

    logout = client.post(f"/unAuthorize?jwtToken={jwt}")
    assert logout.status_code == 200
    assert logout.json()["messageType"] == "success"
    after_logout = client.get(f"/contact?phoneNumber={phone}&jwtToken={jwt}")
    assert (after_logout.status_code, after_logout.text) == (
        400,
        "Please go to Settings and authorize CRM platform",
    )

    # what the CRM itself stored: one contact with the right name, type and phone; one call on it
    stored = crm.contacts_with_phone(phone)
    assert len(stored) == 1
    assert stored[0]["name"] == "Ada Placeholder" and stored[0]["type"] == "lead"
    assert [p["number"] for p in stored[0]["phones"]] == [phone]  # type: ignore[union-attr]
    activities = crm.activities_of(stored[0]["id"])
    calls = [a for a in activities if a["kind"] == "call"]
    messages = [a for a in activities if a["kind"] == "message"]
    assert len(calls) == 1 and len(messages) == 1
    assert "updated note" in str(calls[0]["body"])
    assert "- Duration: 2 minutes, 5 seconds" in str(calls[0]["body"])
    assert "https://media.example/rec/1" in str(calls[0]["body"])
    assert "hi there" in str(messages[0]["body"])


def test_bearer_header_works_like_the_query_token(client: httpx.Client, jwt: str) -> None:
    response = client.get(
        "/contact", params={"phoneNumber": new_phone()}, headers={"Authorization": f"Bearer {jwt}"}
    )
    assert response.status_code == 200
    assert response.json()["contact"][0]["isNewContact"] is True


def test_a_placeholder_contact_replaces_the_cached_lookup_answer(
    server: LiveServer, client: httpx.Client, crm_api_key: str, jwt: str
) -> None:
    """A number whose match is cached gets one more contact: the next lookup must show it, not the cache."""
    phone = new_phone()
    stored = client.post(
        "/testcrm/api/v1/contacts",
        json={"name": "Already There", "type": "contact", "phones": [{"number": phone}]},
        auth=(crm_api_key, ""),
    )
    assert stored.status_code in (200, 201), stored.text

    def lookup() -> list[str]:
        found = client.get("/contact", params={"phoneNumber": phone, "jwtToken": jwt}).json()
        return sorted(str(c["name"]) for c in found["contact"] if not c.get("isNewContact"))

    assert lookup() == ["Already There"]  # this answer is now cached
    created = client.post(
        f"/contact?jwtToken={jwt}",
        json={"phoneNumber": phone, "newContactName": "New Holder", "newContactType": "contact"},
    )
    assert created.status_code == 200 and created.json()["successful"] is True, created.text
    assert lookup() == ["Already There", "New Holder"]
