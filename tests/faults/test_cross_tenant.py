"""Item 1 of issue 6: a user of another company who knows a session id, a conversation log id or an account id
learns nothing and changes nothing of the owner's, and the owner can still log its own calls.

Two companies on one server: two test-CRM users (their own API keys) logged in with different rc-account-ids.
The test CRM itself is one organisation (any key reads any record), so everything B could reach goes through
the connector server's own rows: exactly what these tests check."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import CrmView, LiveServer, call_log_body, crm_admin_headers, new_phone

HOSTNAME = "testcrm.local"


@dataclass
class Company:
    rc_account_id: str
    jwt: str
    crm: CrmView
    crm_key: str
    phone: str
    contact_id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.jwt}"}


def login(client: httpx.Client, crm_key: str, rc_account_id: str) -> httpx.Response:
    return client.post(
        "/apiKeyLogin",
        json={"platform": "testcrm", "apiKey": crm_key, "hostname": HOSTNAME},
        headers={"rc-account-id": rc_account_id},
    )


def new_company(client: httpx.Client, name: str) -> Company:
    key = client.post("/testcrm/api/v1/api-keys", json={"name": name}, headers=crm_admin_headers()).json()[
        "apiKey"
    ]
    account = f"acct-{uuid.uuid4().hex}"
    response = login(client, key, account)
    assert response.status_code == 200, response.text
    jwt = response.json()["jwtToken"]
    phone = new_phone()
    created = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": f"{name} Customer", "newContactType": "contact"},
        headers={"Authorization": f"Bearer {jwt}"},
    ).json()
    assert created["successful"] is True, created
    return Company(account, jwt, CrmView(client, key), key, phone, str(created["contact"]["id"]))


@pytest.fixture
def companies(client: httpx.Client, server: LiveServer) -> tuple[Company, Company]:
    return new_company(client, "Alpha"), new_company(client, "Beta")


def log_call(client: httpx.Client, company: Company, session: str, note: str) -> dict[str, object]:
    body = call_log_body(session, company.contact_id, company.phone, note=note)
    answer: dict[str, object] = client.post("/callLog", json=body, headers=company.auth).json()
    return answer


def only_activity(company: Company) -> dict[str, object]:
    activities = company.crm.activities_of(company.contact_id)
    assert len(activities) == 1, activities
    return activities[0]


def test_another_company_cannot_read_a_call_log_or_its_note(
    client: httpx.Client, companies: tuple[Company, Company]
) -> None:
    a, b = companies
    session = f"xt-read-{uuid.uuid4().hex}"
    assert log_call(client, a, session, note="alpha secret note")["successful"] is True

    seen = client.get("/callLog", params={"sessionIds": session, "requireDetails": "true"}, headers=b.auth)
    assert "alpha secret note" not in seen.text
    assert seen.json()["logs"][0]["matched"] is False
    owner_view = client.get("/callLog", params={"sessionIds": session}, headers=a.auth).json()
    assert owner_view["logs"][0]["matched"] is True


def test_another_company_cannot_overwrite_note_or_subject(
    client: httpx.Client, companies: tuple[Company, Company]
) -> None:
    a, b = companies
    session = f"xt-patch-{uuid.uuid4().hex}"
    assert log_call(client, a, session, note="alpha note")["successful"] is True
    before = only_activity(a)

    answer = client.patch(
        "/callLog",
        json={"sessionId": session, "note": "beta was here", "subject": "hijacked", "duration": 1},
        headers=b.auth,
    ).json()
    assert answer["successful"] is False
    after = only_activity(a)
    assert (after["subject"], after["body"], after["duration_seconds"]) == (
        before["subject"],
        before["body"],
        before["duration_seconds"],
    )
    assert b.crm.activities_of(b.contact_id) == []


def test_another_company_cannot_set_a_disposition(
    client: httpx.Client, companies: tuple[Company, Company]
) -> None:
    a, b = companies
    session = f"xt-disp-{uuid.uuid4().hex}"
    assert log_call(client, a, session, note="alpha note")["successful"] is True
    before = only_activity(a)

    answer = client.put(
        "/callDisposition",
        json={"sessionId": session, "dispositions": {"outcome": "hijacked"}},
        headers=b.auth,
    ).json()
    assert answer["successful"] is False
    assert only_activity(a)["disposition"] == before["disposition"]


def test_another_company_logging_the_same_session_id_does_not_block_the_owner(
    client: httpx.Client, companies: tuple[Company, Company]
) -> None:
    a, b = companies
    session = f"xt-block-{uuid.uuid4().hex}"
    log_call(client, b, session, note="beta got there first")  # B's own log of B's own contact, if anything

    owner = log_call(client, a, session, note="alpha note")
    assert owner["successful"] is True, owner
    activity = only_activity(a)
    assert owner["logId"] == str(activity["id"])
    assert "beta" not in str(activity["body"])
    owner_view = client.get("/callLog", params={"sessionIds": session}, headers=a.auth).json()
    assert owner_view["logs"][0] == {"sessionId": session, "matched": True, "logId": str(activity["id"])}
    assert len(b.crm.activities_of(b.contact_id)) <= 1


def message_body(company: Company, conversation_log_id: str, message_id: str, text: str) -> dict[str, object]:
    return {
        "logInfo": {
            "conversationId": conversation_log_id.rsplit("-", 3)[0],
            "conversationLogId": conversation_log_id,
            "messages": [
                {
                    "id": message_id,
                    "subject": text,
                    "direction": "Inbound",
                    "creationTime": "2026-11-25T10:00:00Z",
                    "from": {"phoneNumber": company.phone},
                }
            ],
            "correspondents": [{"phoneNumber": company.phone}],
        },
        "contactId": company.contact_id,
        "contactName": "Customer",
    }


def test_another_company_cannot_append_to_a_message_log(
    client: httpx.Client, companies: tuple[Company, Company]
) -> None:
    a, b = companies
    conversation_log_id = f"conv{uuid.uuid4().hex}-2026-11-25"
    first = client.post(
        "/messageLog",
        json=message_body(a, conversation_log_id, f"m-{uuid.uuid4().hex}", "alpha hello"),
        headers=a.auth,
    ).json()
    assert first["successful"] is True, first
    before = only_activity(a)

    client.post(
        "/messageLog",
        json=message_body(b, conversation_log_id, f"m-{uuid.uuid4().hex}", "beta intrusion"),
        headers=b.auth,
    )
    after = only_activity(a)
    assert after["body"] == before["body"]
    assert "beta intrusion" not in str(after["body"])


def test_a_borrowed_account_id_and_hostname_do_not_reveal_cached_contacts(
    client: httpx.Client, companies: tuple[Company, Company], server: LiveServer
) -> None:
    a, b = companies
    found = client.get("/contact", params={"phoneNumber": a.phone}, headers=a.auth).json()
    assert found["contact"][0]["id"] == a.contact_id  # now in A's contact cache

    impostor = login(client, b.crm_key, a.rc_account_id)
    if impostor.status_code != 200:
        return  # refusing the borrowed account id outright also keeps A's data away from B
    impostor_auth = {"Authorization": f"Bearer {impostor.json()['jwtToken']}"}
    # The CRM now fails every contact search: an answer naming A's contact can only come from A's cache.
    a.crm.inject(status=500, times=20, method="GET", path_prefix="/api/v1/contacts")
    try:
        answer = client.get("/contact", params={"phoneNumber": a.phone}, headers=impostor_auth)
    finally:
        a.crm.clear_faults()
    ids = [c.get("id") for c in answer.json().get("contact") or []]
    assert a.contact_id not in ids
    assert "Alpha Customer" not in answer.text
