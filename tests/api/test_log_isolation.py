"""Tenant isolation: call logs, message logs and the contact cache belong to a CRM-verified account only.

Two companies on one server: each is a test-CRM user (the test CRM's API-key account is the tenant). The
attacker knows the victim's session id, conversation log id and message ids, and even claims the victim's
`rc-account-id` and hostname at login; none of it reaches the victim's rows.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import CrmView, LiveServer, call_log_body, crm_admin_headers, new_phone


def auth(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}


def new_company(
    client: httpx.Client, *, rc_account_id: str, hostname: str = "testcrm.local"
) -> tuple[str, str]:
    """A test-CRM account and its user logged in to the server: (api key, jwt)."""
    key = client.post(
        "/testcrm/api/v1/api-keys", json={"name": f"Co {uuid.uuid4().hex[:6]}"}, headers=crm_admin_headers()
    ).json()["apiKey"]
    login = client.post(
        "/apiKeyLogin",
        json={"platform": "testcrm", "apiKey": key, "hostname": hostname},
        headers={"rc-account-id": rc_account_id},
    )
    assert login.status_code == 200, login.text
    return key, login.json()["jwtToken"]


def new_contact(client: httpx.Client, jwt: str, phone: str, name: str) -> str:
    created = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": name, "newContactType": "contact"},
        headers=auth(jwt),
    ).json()
    assert created["successful"] is True, created
    contact_id: str = created["contact"]["id"]
    return contact_id


@pytest.fixture
def companies(client: httpx.Client) -> tuple[tuple[str, str], tuple[str, str]]:
    """The victim and the attacker, each its own company; the attacker even claims the victim's RC account."""
    rc_account = f"acct-{uuid.uuid4().hex}"
    return new_company(client, rc_account_id=rc_account), new_company(client, rc_account_id=rc_account)


def test_another_company_cannot_see_read_edit_or_block_a_call_log(
    client: httpx.Client, companies: tuple[tuple[str, str], tuple[str, str]]
) -> None:
    (victim_key, victim), (_attacker_key, attacker) = companies
    phone = new_phone()
    victim_contact = new_contact(client, victim, phone, "Victim Customer")
    session = f"iso-{uuid.uuid4().hex}"
    logged = client.post(
        "/callLog",
        json=call_log_body(session, victim_contact, phone, note="secret note"),
        headers=auth(victim),
    ).json()
    assert logged["successful"] is True

    seen = client.get(
        "/callLog", params={"sessionIds": session, "requireDetails": "true"}, headers=auth(attacker)
    ).json()
    assert seen["logs"] == [{"sessionId": session, "matched": False}]
    assert "secret note" not in str(seen)

    patched = client.patch(
        "/callLog", json={"sessionId": session, "note": "overwritten"}, headers=auth(attacker)
    )
    assert patched.json()["successful"] is False
    disposed = client.put(
        "/callDisposition",
        json={"sessionId": session, "dispositions": {"outcome": "lost"}},
        headers=auth(attacker),
    )
    assert disposed.json()["successful"] is False
    activity = CrmView(client, victim_key).activities_of(victim_contact)
    assert len(activity) == 1
    assert "secret note" in str(activity[0]["body"]) and "overwritten" not in str(activity[0]["body"])
    assert activity[0]["disposition"] is None

    # the attacker logging "the same" session id neither fails nor blocks anything of the victim's
    attacker_contact = new_contact(client, attacker, new_phone(), "Attacker Customer")
    own = client.post(
        "/callLog", json=call_log_body(session, attacker_contact, phone), headers=auth(attacker)
    )
    assert own.json()["successful"] is True, own.text
    assert (
        client.get("/callLog", params={"sessionIds": session}, headers=auth(victim)).json()["logs"][0][
            "logId"
        ]
        == logged["logId"]
    )


def message_body(
    conversation_log_id: str, message_id: str, contact_id: str, phone: str, text: str
) -> dict[str, object]:
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
                    "from": {"phoneNumber": phone},
                }
            ],
            "correspondents": [{"phoneNumber": phone}],
        },
        "contactId": contact_id,
        "contactName": "Someone",
    }


def test_another_company_cannot_append_to_or_suppress_a_message_log(
    client: httpx.Client, companies: tuple[tuple[str, str], tuple[str, str]]
) -> None:
    (victim_key, victim), (attacker_key, attacker) = companies
    phone = new_phone()
    victim_contact = new_contact(client, victim, phone, "Victim Texter")
    conversation = f"conv{uuid.uuid4().hex[:8]}-2026-11-25"
    first = client.post(
        "/messageLog",
        json=message_body(conversation, f"m1-{phone}", victim_contact, phone, "hi"),
        headers=auth(victim),
    ).json()
    assert first["successful"] is True and first["logIds"] == [f"m1-{phone}"]

    attacker_contact = new_contact(client, attacker, new_phone(), "Attacker Texter")
    appended = client.post(
        "/messageLog",
        json=message_body(conversation, f"m2-{phone}", attacker_contact, phone, "injected"),
        headers=auth(attacker),
    ).json()
    replayed = client.post(
        "/messageLog",
        json=message_body(conversation, f"m1-{phone}", attacker_contact, phone, "mine"),
        headers=auth(attacker),
    ).json()
    assert appended["successful"] is True and replayed["successful"] is True
    # the attacker's messages went into the attacker's own activity; the victim's id did not hide theirs
    assert replayed["logIds"] == [f"m1-{phone}"]
    victim_activities = CrmView(client, victim_key).activities_of(victim_contact)
    assert len(victim_activities) == 1
    assert "injected" not in str(victim_activities[0]["body"])
    attacker_activities = CrmView(client, attacker_key).activities_of(attacker_contact)
    assert len(attacker_activities) == 1 and "injected" in str(attacker_activities[0]["body"])


def test_spoofed_account_headers_do_not_read_another_companys_contact_cache(
    client: httpx.Client, crm: CrmView
) -> None:
    rc_account = f"acct-{uuid.uuid4().hex}"
    hostname = f"victim-{uuid.uuid4().hex[:6]}.example"
    _victim_key, victim = new_company(client, rc_account_id=rc_account, hostname=hostname)
    phone = new_phone()
    new_contact(client, victim, phone, "Cached Secret")
    found = client.get("/contact", params={"phoneNumber": phone}, headers=auth(victim)).json()
    assert found["contact"][0]["name"] == "Cached Secret"  # now in the victim's contact cache

    # the attacker logs in with their OWN CRM key while claiming the victim's rc-account-id and hostname;
    # the CRM is unreachable for their lookup, so a contact in the answer could only come from the cache
    _attacker_key, attacker = new_company(client, rc_account_id=rc_account, hostname=hostname)
    crm.clear_faults()
    crm.inject(status=503, times=10, method="GET", path_prefix="/api/v1/contacts")
    try:
        stolen = client.get("/contact", params={"phoneNumber": phone}, headers=auth(attacker)).json()
    finally:
        crm.clear_faults()
    assert "Cached Secret" not in str(stolen)
    assert stolen["successful"] is False


def test_users_of_one_server_have_distinct_scopes(server: LiveServer, client: httpx.Client) -> None:
    """The scope is stored at login from what the CRM reported, not from the rc-account-id header."""
    import asyncio

    from sqlalchemy import select

    from appconnect.store.db import create_engine
    from appconnect.store.tables import users

    rc_account = f"acct-{uuid.uuid4().hex}"
    keys = [new_company(client, rc_account_id=rc_account)[0] for _ in range(2)]
    me = [client.get("/testcrm/api/v1/me", auth=(key, "")).json()["id"] for key in keys]

    async def scopes() -> list[str | None]:
        engine = create_engine(server.settings.database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(users.c.id, users.c.account_scope).where(
                        users.c.id.in_([f"{i}-testcrm" for i in me])
                    )
                )
                found = {r.id: r.account_scope for r in rows}
        finally:
            await engine.dispose()
        return [found.get(f"{i}-testcrm") for i in me]

    stored = asyncio.run(scopes())
    assert all(stored) and stored[0] != stored[1]
    assert all(rc_account not in str(scope) for scope in stored)


def test_logs_from_before_scopes_follow_their_user_into_the_verified_scope(
    server: LiveServer, client: httpx.Client
) -> None:
    """A user who logged calls before migration 0003 logs in again: those calls are still matched."""
    import asyncio

    from sqlalchemy import insert, update

    from appconnect.store.db import create_engine
    from appconnect.store.tables import call_logs, users
    from appconnect.store.user_cache import announce_user_change

    key, jwt = new_company(client, rc_account_id=f"acct-{uuid.uuid4().hex}")
    user_id = f"{client.get('/testcrm/api/v1/me', auth=(key, '')).json()['id']}-testcrm"
    session = f"legacy-{uuid.uuid4().hex}"

    async def make_legacy() -> None:
        engine = create_engine(server.settings.database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(update(users).where(users.c.id == user_id).values(account_scope=None))
                await conn.execute(
                    insert(call_logs).values(
                        scope=f"legacy:{user_id}",
                        session_id=session,
                        platform="testcrm",
                        user_id=user_id,
                        third_party_log_id="legacy-activity",
                        status="done",
                    )
                )
        finally:
            await engine.dispose()
        await announce_user_change(server.settings.database_url, user_id)

    asyncio.run(make_legacy())
    assert client.get("/callLog", params={"sessionIds": session}, headers=auth(jwt)).json()["logs"][0][
        "matched"
    ]
    _key, relogged = new_company_login(client, key)
    logs = client.get("/callLog", params={"sessionIds": session}, headers=auth(relogged)).json()["logs"]
    assert logs == [{"sessionId": session, "matched": True, "logId": "legacy-activity"}]


def new_company_login(client: httpx.Client, key: str) -> tuple[str, str]:
    login = client.post("/apiKeyLogin", json={"platform": "testcrm", "apiKey": key})
    assert login.status_code == 200, login.text
    return key, login.json()["jwtToken"]
