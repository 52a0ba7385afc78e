"""The fake must reject what Pipedrive rejects, or connector tests against it prove nothing."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import httpx
import pytest
from fake_pipedrive import FakePipedrive, TokenPair


def _basic(fake: FakePipedrive, secret: str | None = None) -> dict[str, str]:
    raw = f"{fake.client_id}:{secret if secret is not None else fake.client_secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _exchange(
    client: httpx.AsyncClient, fake: FakePipedrive, code: str, redirect_uri: str | None = None
) -> httpx.Response:
    return await client.post(
        fake.token_url,
        headers=_basic(fake),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri or fake.redirect_uri,
        },
    )


async def _refresh(client: httpx.AsyncClient, fake: FakePipedrive, refresh_token: str) -> httpx.Response:
    return await client.post(
        fake.token_url,
        headers=_basic(fake),
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
    )


# --- OAuth --------------------------------------------------------------------------------------------------


async def test_code_exchange_returns_pipedrive_token_shape(
    fake_pipedrive: FakePipedrive, http_client: httpx.AsyncClient
) -> None:
    response = await _exchange(http_client, fake_pipedrive, fake_pipedrive.issue_code())
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["api_domain"] == fake_pipedrive.base_url
    assert {"access_token", "refresh_token", "scope"} <= set(body)
    assert fake_pipedrive.is_access_token_valid(body["access_token"])
    recorded = fake_pipedrive.requests_to("/oauth/token")[0]
    assert recorded.auth_scheme == "Basic"
    assert recorded.form == {
        "grant_type": "authorization_code",
        "code": "<redacted>",
        "redirect_uri": fake_pipedrive.redirect_uri,
    }


async def test_code_is_single_use(fake_pipedrive: FakePipedrive, http_client: httpx.AsyncClient) -> None:
    code = fake_pipedrive.issue_code()
    assert (await _exchange(http_client, fake_pipedrive, code)).status_code == 200
    second = await _exchange(http_client, fake_pipedrive, code)
    assert second.status_code == 400
    assert second.json() == {"error": "invalid_grant"}


async def test_code_exchange_rejects_wrong_redirect_uri(
    fake_pipedrive: FakePipedrive, http_client: httpx.AsyncClient
) -> None:
    response = await _exchange(
        http_client, fake_pipedrive, fake_pipedrive.issue_code(), redirect_uri="https://evil.example/cb"
    )
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant"}


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Basic Zm9vOmJhcg=="}, {"Authorization": "Bearer x"}]
)
async def test_token_endpoint_requires_basic_client_auth(
    fake_pipedrive: FakePipedrive, http_client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await http_client.post(
        fake_pipedrive.token_url,
        headers=headers,
        data={
            "grant_type": "authorization_code",
            "code": fake_pipedrive.issue_code(),
            "redirect_uri": fake_pipedrive.redirect_uri,
        },
    )
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client"}


async def test_token_endpoint_rejects_json_body(
    fake_pipedrive: FakePipedrive, http_client: httpx.AsyncClient
) -> None:
    response = await http_client.post(
        fake_pipedrive.token_url,
        headers=_basic(fake_pipedrive),
        json={
            "grant_type": "authorization_code",
            "code": fake_pipedrive.issue_code(),
            "redirect_uri": fake_pipedrive.redirect_uri,
        },
    )
    assert response.status_code == 400


async def test_authorize_redirects_with_a_usable_code(
    fake_pipedrive: FakePipedrive, http_client: httpx.AsyncClient
) -> None:
    response = await http_client.get(
        fake_pipedrive.authorize_url,
        params={
            "client_id": fake_pipedrive.client_id,
            "redirect_uri": fake_pipedrive.redirect_uri,
            "state": "s1",
        },
    )
    assert response.status_code == 302
    location = httpx.URL(response.headers["location"])
    assert location.params["state"] == "s1"
    assert (await _exchange(http_client, fake_pipedrive, location.params["code"])).status_code == 200


async def test_access_token_expires_on_the_fake_clock(
    fake_pipedrive: FakePipedrive, http_client: httpx.AsyncClient, pipedrive_tokens: TokenPair
) -> None:
    me = f"{fake_pipedrive.base_url}/v1/users/me"
    assert (await http_client.get(me, headers=_bearer(pipedrive_tokens.access_token))).status_code == 200
    fake_pipedrive.advance_time(3601)
    expired = await http_client.get(me, headers=_bearer(pipedrive_tokens.access_token))
    assert expired.status_code == 401
    assert expired.json()["error"] == "unauthorized access"


async def test_refresh_issues_new_access_token_and_counts(
    fake_pipedrive: FakePipedrive, http_client: httpx.AsyncClient, pipedrive_tokens: TokenPair
) -> None:
    fake_pipedrive.advance_time(4000)
    response = await _refresh(http_client, fake_pipedrive, pipedrive_tokens.refresh_token)
    assert response.status_code == 200
    body = response.json()
    assert body["access_token"] != pipedrive_tokens.access_token
    assert body["refresh_token"] == pipedrive_tokens.refresh_token
    assert fake_pipedrive.refresh_calls == 1
    me = await http_client.get(
        f"{fake_pipedrive.base_url}/v1/users/me", headers=_bearer(body["access_token"])
    )
    assert me.status_code == 200


async def test_refresh_rotation_invalidates_the_old_refresh_token(
    fake_pipedrive: FakePipedrive, http_client: httpx.AsyncClient, pipedrive_tokens: TokenPair
) -> None:
    fake_pipedrive.refresh_token_mode = "rotate"
    body = (await _refresh(http_client, fake_pipedrive, pipedrive_tokens.refresh_token)).json()
    assert body["refresh_token"] != pipedrive_tokens.refresh_token
    reused = await _refresh(http_client, fake_pipedrive, pipedrive_tokens.refresh_token)
    assert reused.status_code == 400
    assert reused.json() == {"error": "invalid_grant"}
    assert (await _refresh(http_client, fake_pipedrive, body["refresh_token"])).status_code == 200


async def test_refresh_can_omit_the_refresh_token(
    fake_pipedrive: FakePipedrive, http_client: httpx.AsyncClient, pipedrive_tokens: TokenPair
) -> None:
    fake_pipedrive.refresh_token_mode = "omit"
    body = (await _refresh(http_client, fake_pipedrive, pipedrive_tokens.refresh_token)).json()
    assert "refresh_token" not in body
    assert (await _refresh(http_client, fake_pipedrive, pipedrive_tokens.refresh_token)).status_code == 200


async def test_unknown_refresh_token_is_invalid_grant(
    fake_pipedrive: FakePipedrive, http_client: httpx.AsyncClient
) -> None:
    response = await _refresh(http_client, fake_pipedrive, "rt-nope")
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant"}


async def test_revoking_the_refresh_token_ends_the_grant(
    fake_pipedrive: FakePipedrive, http_client: httpx.AsyncClient, pipedrive_tokens: TokenPair
) -> None:
    unauthenticated = await http_client.post(
        fake_pipedrive.revoke_url, data={"token": pipedrive_tokens.refresh_token}
    )
    assert unauthenticated.status_code == 401
    response = await http_client.post(
        fake_pipedrive.revoke_url,
        headers=_basic(fake_pipedrive),
        data={"token": pipedrive_tokens.refresh_token, "token_type_hint": "refresh_token"},
    )
    assert response.status_code == 200
    assert not fake_pipedrive.is_access_token_valid(pipedrive_tokens.access_token)
    assert (await _refresh(http_client, fake_pipedrive, pipedrive_tokens.refresh_token)).status_code == 400
    assert fake_pipedrive.revoke_calls == 1


async def test_revoking_an_access_token_keeps_the_refresh_token(
    fake_pipedrive: FakePipedrive, http_client: httpx.AsyncClient, pipedrive_tokens: TokenPair
) -> None:
    await http_client.post(
        fake_pipedrive.revoke_url,
        headers=_basic(fake_pipedrive),
        data={"token": pipedrive_tokens.access_token},
    )
    assert not fake_pipedrive.is_access_token_valid(pipedrive_tokens.access_token)
    assert fake_pipedrive.is_refresh_token_valid(pipedrive_tokens.refresh_token)


# --- API ----------------------------------------------------------------------------------------------------


@pytest.fixture
async def api(fake_pipedrive: FakePipedrive, pipedrive_tokens: TokenPair) -> Any:
    async with httpx.AsyncClient(
        base_url=fake_pipedrive.base_url, timeout=10, headers=_bearer(pipedrive_tokens.access_token)
    ) as client:
        yield client


@pytest.mark.parametrize("path", ["/v1/users/me", "/api/v2/persons/1001", "/v1/activityTypes"])
async def test_api_requires_a_valid_bearer_token(
    fake_pipedrive: FakePipedrive, http_client: httpx.AsyncClient, path: str
) -> None:
    response = await http_client.get(fake_pipedrive.base_url + path, headers=_bearer("at-forged"))
    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "error": "unauthorized access",
        "errorCode": 401,
        "error_info": response.json()["error_info"],
    }


async def test_users_me(api: httpx.AsyncClient, fake_pipedrive: FakePipedrive) -> None:
    data = (await api.get("/v1/users/me")).json()["data"]
    assert data["id"] == 12345
    assert data["company_domain"] == "testcompany"


async def test_phone_search_matches_digits_and_plus_quirk(
    api: httpx.AsyncClient, fake_pipedrive: FakePipedrive
) -> None:
    org = fake_pipedrive.add_org("Analytical Engines", address="London")
    ada = fake_pipedrive.add_person("Ada Lovelace", phones=["+1 (415) 555-0102"], org_id=org["id"])
    fake_pipedrive.add_person("Someone Else", phones=["+14155550199"])
    params = {"term": "4155550102", "fields": "phone"}
    by_sig = (await api.get("/api/v2/persons/search", params=params)).json()
    assert by_sig["additional_data"] == {"next_cursor": None}
    [hit] = by_sig["data"]["items"]
    assert hit["item"]["id"] == ada["id"]
    assert hit["item"]["type"] == "person"
    assert hit["item"]["phones"] == ["+1 (415) 555-0102"]
    assert hit["item"]["organization"] == {"id": org["id"], "name": "Analytical Engines", "address": "London"}
    # Node sends `+` raw, which decodes to a space: it must behave like the encoded `%2B`.
    raw = (await api.get("/api/v2/persons/search?term=+14155550102&fields=phone")).json()
    assert [i["item"]["id"] for i in raw["data"]["items"]] == [ada["id"]]


async def test_search_rejects_short_term_and_bad_fields(api: httpx.AsyncClient) -> None:
    assert (await api.get("/api/v2/persons/search", params={"term": "a"})).status_code == 400
    bad_fields = {"term": "ab", "fields": "phonez"}
    assert (await api.get("/api/v2/persons/search", params=bad_fields)).status_code == 400


async def test_name_search(api: httpx.AsyncClient, fake_pipedrive: FakePipedrive) -> None:
    grace = fake_pipedrive.add_person("Grace Hopper")
    fake_pipedrive.add_person("Ada Lovelace")
    body = (await api.get("/api/v2/persons/search", params={"term": "hopper", "fields": "name"})).json()
    assert [i["item"]["id"] for i in body["data"]["items"]] == [grace["id"]]
    assert body["data"]["items"][0]["item"]["organization"] is None


async def test_search_paginates_with_cursor(api: httpx.AsyncClient, fake_pipedrive: FakePipedrive) -> None:
    for i in range(3):
        fake_pipedrive.add_person(f"Hopper {i}")
    first = (await api.get("/api/v2/persons/search", params={"term": "hopper", "limit": 2})).json()
    assert len(first["data"]["items"]) == 2
    cursor = first["additional_data"]["next_cursor"]
    second = (await api.get("/api/v2/persons/search", params={"term": "hopper", "cursor": cursor})).json()
    assert len(second["data"]["items"]) == 1
    assert second["additional_data"]["next_cursor"] is None


async def test_create_person_v2_shape(api: httpx.AsyncClient, fake_pipedrive: FakePipedrive) -> None:
    phones = [{"value": "+14155550104", "primary": True, "label": "mobile"}]
    response = await api.post("/api/v2/persons", json={"name": "Katherine Johnson", "phones": phones})
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["phones"] == phones
    assert data["owner_id"] == fake_pipedrive.user["id"] and data["add_time"].endswith("Z")
    assert fake_pipedrive.persons[data["id"]]["name"] == "Katherine Johnson"
    bare = await api.post("/api/v2/persons", json={"name": "K J", "phones": [{"value": "+1415"}]})
    assert bare.json()["data"]["phones"] == [{"value": "+1415", "primary": True, "label": "work"}]


async def test_create_person_v1_is_gone(api: httpx.AsyncClient, fake_pipedrive: FakePipedrive) -> None:
    """The retired v1 create is refused, and nothing is made."""
    response = await api.post("/v1/persons", json={"name": "Katherine Johnson", "phone": "+14155550104"})
    assert response.status_code == 410 and response.json()["success"] is False
    assert fake_pipedrive.persons == {}


@pytest.mark.parametrize(
    "body",
    [
        {"phones": [{"value": "+14155550104"}]},
        {"name": ""},
        {"name": 5},
        {"name": "X", "phone": "+14155550104"},  # v1's field
        {"name": "X", "phones": "+14155550104"},
        {"name": "X", "phones": [{"number": "1"}]},
        {"name": "X", "phones": [{"value": "1", "primary": "true"}]},
        {"name": "X", "phones": [{"value": "1", "primary": True}, {"value": "2", "primary": True}]},
        {"name": "X", "org_id": "12"},
        {"name": "X", "org_id": 99999},
        {"name": "X", "owner_id": 99999},
    ],
)
async def test_create_person_rejects_bad_bodies(api: httpx.AsyncClient, body: dict[str, Any]) -> None:
    assert (await api.post("/api/v2/persons", json=body)).status_code == 400


async def test_get_person_v2(api: httpx.AsyncClient, fake_pipedrive: FakePipedrive) -> None:
    org = fake_pipedrive.add_org("Acme")
    person = fake_pipedrive.add_person("Maya Patel", phones=["+14155550142"], org_id=org["id"])
    data = (await api.get(f"/api/v2/persons/{person['id']}")).json()["data"]
    assert data["org_id"] == org["id"]
    assert data["phones"] == [{"value": "+14155550142", "primary": True, "label": "work"}]
    assert data["add_time"].endswith("Z")
    assert (await api.get("/api/v2/persons/424242")).status_code == 404


async def test_deals_and_leads_filter_by_person(
    api: httpx.AsyncClient, fake_pipedrive: FakePipedrive
) -> None:
    person = fake_pipedrive.add_person("Maya Patel")
    deal = fake_pipedrive.add_deal("Renewal", person_id=person["id"])
    fake_pipedrive.add_deal("Won already", person_id=person["id"], status="won")
    fake_pipedrive.add_deal("Someone else's", person_id=person["id"] + 1)
    lead = fake_pipedrive.add_lead("Upsell", person_id=person["id"])
    deals = (await api.get("/api/v2/deals", params={"person_id": person["id"], "status": "open"})).json()
    assert [d["id"] for d in deals["data"]] == [deal["id"]]
    assert deals["additional_data"] == {"next_cursor": None}
    leads = (await api.get("/v1/leads", params={"person_id": person["id"]})).json()
    assert [le["id"] for le in leads["data"]] == [lead["id"]]
    assert (await api.get("/api/v2/deals", params={"person_id": "x"})).status_code == 400
    assert (await api.get("/api/v2/deals", params={"status": "pending"})).status_code == 400


async def test_activity_types(api: httpx.AsyncClient) -> None:
    data = (await api.get("/v1/activityTypes")).json()["data"]
    call = next(t for t in data if t["key_string"] == "call")
    assert call["name"] == "Call" and call["active_flag"] is True
    assert any(t["key_string"] == "sms" for t in data)


async def test_a_deactivated_activity_type_is_listed_inactive_and_refused(
    api: httpx.AsyncClient, fake_pipedrive: FakePipedrive
) -> None:
    """Pipedrive lists deactivated types with `active_flag: false`; an activity of one (or of an unknown
    type) is a 400."""
    fake_pipedrive.add_activity_type("Phone (old)", "old_phone", active=False)
    data = (await api.get("/v1/activityTypes")).json()["data"]
    assert next(t for t in data if t["key_string"] == "old_phone")["active_flag"] is False
    person = fake_pipedrive.add_person("Maya Patel")
    for kind in ("old_phone", "no_such_type"):
        refused = await api.post("/api/v2/activities", json=_activity(person["id"], type=kind))
        assert refused.status_code == 400
    assert fake_pipedrive.activities == {}


_PERSON = -1  # stands for "the person this test created"


def _activity(person_id: int, **extra: Any) -> dict[str, Any]:
    body = {
        "subject": "Inbound Call from Maya",
        "type": "call",
        "owner_id": 12345,
        "done": True,
        "due_date": "2026-03-12",
        "due_time": "14:35",
        "duration": "00:09",
        "note": "<b>hi</b>",
        "participants": [{"person_id": person_id, "primary": True}],
    }
    body.update(extra)
    return body


async def test_create_get_patch_activity(api: httpx.AsyncClient, fake_pipedrive: FakePipedrive) -> None:
    person = fake_pipedrive.add_person("Maya Patel")
    deal = fake_pipedrive.add_deal("Renewal", person_id=person["id"])
    created = await api.post("/api/v2/activities", json=_activity(person["id"], deal_id=deal["id"]))
    assert created.status_code == 200
    data = created.json()["data"]
    assert data["person_id"] == person["id"]
    assert data["deal_id"] == deal["id"]
    assert data["add_time"].endswith("Z")
    fetched = (await api.get(f"/api/v2/activities/{data['id']}")).json()["data"]
    assert fetched["note"] == "<b>hi</b>"
    patched = await api.patch(f"/api/v2/activities/{data['id']}", json={"note": "new", "duration": "01:02"})
    assert patched.status_code == 200
    stored = fake_pipedrive.activity(data["id"])
    assert (stored["note"], stored["duration"]) == ("new", "01:02")
    assert stored["subject"] == "Inbound Call from Maya"
    assert (await api.get("/api/v2/activities/999999")).status_code == 404
    assert (await api.patch("/api/v2/activities/999999", json={"note": "x"})).status_code == 404


@pytest.mark.parametrize(
    "extra",
    [
        {"subject": None},
        {"subject": ""},
        {"type": "carrier_pigeon"},
        {"owner_id": "12345"},
        {"deal_id": 999999},
        {"deal_id": "2001"},
        {"lead_id": "not-a-lead"},
        {"org_id": 424242},
        {"participants": [{"person_id": 424242, "primary": True}]},
        {"participants": [{"person_id": "1001", "primary": True}]},
        {"participants": [{"person_id": _PERSON, "primary": "yes"}]},
        {"participants": [{"person_id": _PERSON, "primary": True, "role": "x"}]},
        {"due_date": "2026-3-12"},
        {"due_date": "2026-02-30"},
        {"due_time": "14:35:00"},
        {"due_time": "25:00"},
        {"duration": "300"},
        {"duration": "00:61"},
        {"done": 1},
        {"note": 5},
        {"user_id": 12345},
        {"person_ids": [1]},
    ],
)
async def test_create_activity_rejects_what_v2_rejects(
    api: httpx.AsyncClient, fake_pipedrive: FakePipedrive, extra: dict[str, Any]
) -> None:
    person = fake_pipedrive.add_person("Maya Patel")
    body = _activity(person["id"], **extra)
    for participant in body["participants"]:
        if participant["person_id"] == _PERSON:
            participant["person_id"] = person["id"]
    response = await api.post("/api/v2/activities", json=body)
    assert response.status_code == 400, response.json()
    assert fake_pipedrive.activities == {}


async def test_activity_missing_subject_and_deal_plus_lead_rejected(
    api: httpx.AsyncClient, fake_pipedrive: FakePipedrive
) -> None:
    person = fake_pipedrive.add_person("Maya Patel")
    body = _activity(person["id"])
    del body["subject"]
    assert (await api.post("/api/v2/activities", json=body)).status_code == 400
    deal = fake_pipedrive.add_deal("D", person_id=person["id"])
    lead = fake_pipedrive.add_lead("L", person_id=person["id"])
    both = _activity(person["id"], deal_id=deal["id"], lead_id=lead["id"])
    assert (await api.post("/api/v2/activities", json=both)).status_code == 400
    created = (await api.post("/api/v2/activities", json=_activity(person["id"], deal_id=deal["id"]))).json()
    path = f"/api/v2/activities/{created['data']['id']}"
    assert (await api.patch(path, json={"lead_id": lead["id"]})).status_code == 400
    assert (await api.patch(path, json={"lead_id": lead["id"], "deal_id": None})).status_code == 200
    assert fake_pipedrive.activity(created["data"]["id"])["lead_id"] == lead["id"]


# --- faults -------------------------------------------------------------------------------------------------


async def test_injected_429_carries_rate_limit_headers(
    api: httpx.AsyncClient, fake_pipedrive: FakePipedrive
) -> None:
    fake_pipedrive.inject(429, times=2, path_prefix="/v1/users", retry_after=7)
    for _ in range(2):
        response = await api.get("/v1/users/me")
        assert response.status_code == 429
        assert response.headers["retry-after"] == "7"
        assert response.headers["x-ratelimit-remaining"] == "0"
        assert response.headers["x-ratelimit-limit"] == "80"
        assert response.headers["x-ratelimit-reset"] == "7"
    assert (await api.get("/v1/users/me")).status_code == 200


async def test_injected_fault_filters_by_method_and_path(
    api: httpx.AsyncClient, fake_pipedrive: FakePipedrive
) -> None:
    fake_pipedrive.inject(500, method="POST", path_prefix="/api/v2/persons")
    assert (await api.get("/api/v2/persons/search", params={"term": "AB"})).status_code == 200
    assert (await api.post("/api/v2/persons", json={"name": "A B"})).status_code == 500
    assert (await api.post("/api/v2/persons", json={"name": "A B"})).status_code == 200


async def test_injected_delay_does_not_block_other_requests(
    api: httpx.AsyncClient, fake_pipedrive: FakePipedrive
) -> None:
    fake_pipedrive.inject(delay=0.5, path_prefix="/v1/activityTypes")
    started = time.monotonic()
    slow = asyncio.ensure_future(api.get("/v1/activityTypes"))
    await asyncio.sleep(0.05)
    assert (await api.get("/v1/users/me")).status_code == 200
    assert not slow.done()
    assert (await slow).status_code == 200
    assert time.monotonic() - started >= 0.5


async def test_request_log_keeps_bodies_not_tokens(
    api: httpx.AsyncClient, fake_pipedrive: FakePipedrive, pipedrive_tokens: TokenPair
) -> None:
    await api.post("/api/v2/persons", json={"name": "Log Me", "phones": [{"value": "+1415"}]})
    [recorded] = fake_pipedrive.requests_to("/api/v2/persons", "POST")
    assert recorded.json == {"name": "Log Me", "phones": [{"value": "+1415"}]}
    assert recorded.auth_scheme == "Bearer"
    assert pipedrive_tokens.access_token not in repr(fake_pipedrive.requests)


async def test_list_activities_filters_sorts_and_pages(
    api: httpx.AsyncClient, fake_pipedrive: FakePipedrive
) -> None:
    maya = fake_pipedrive.add_person("Maya Patel")
    other = fake_pipedrive.add_person("Someone Else")
    ids = [
        (await api.post("/api/v2/activities", json=_activity(maya["id"], note=f"n{i}"))).json()["data"]["id"]
        for i in range(3)
    ]
    await api.post("/api/v2/activities", json=_activity(other["id"]))
    await api.post("/api/v2/activities", json=_activity(maya["id"], done=False))
    params = {"person_id": maya["id"], "owner_id": 12345, "done": "true", "sort_by": "id", "limit": 2}
    first = (await api.get("/api/v2/activities", params={**params, "sort_direction": "desc"})).json()
    assert [a["id"] for a in first["data"]] == [ids[2], ids[1]]
    cursor = first["additional_data"]["next_cursor"]
    rest = (
        await api.get("/api/v2/activities", params={**params, "sort_direction": "desc", "cursor": cursor})
    ).json()
    assert [a["id"] for a in rest["data"]] == [ids[0]] and rest["additional_data"]["next_cursor"] is None
    assert rest["data"][0]["note"] == "n0"
    assert (await api.get("/api/v2/activities", params={"limit": 501})).status_code == 400
    assert (await api.get("/api/v2/activities", params={"person_id": "x"})).status_code == 400


async def test_burst_limit_counts_per_token(api: httpx.AsyncClient, fake_pipedrive: FakePipedrive) -> None:
    fake_pipedrive.rate_limit.limit = 3
    remaining = [(await api.get("/v1/users/me")).headers["x-ratelimit-remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    limited = await api.get("/v1/users/me")
    assert limited.status_code == 429 and limited.json()["errorCode"] == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 2
    fake_pipedrive.advance_time(2)
    assert (await api.get("/v1/users/me")).status_code == 200


async def test_search_has_its_own_limit_per_token(
    api: httpx.AsyncClient, fake_pipedrive: FakePipedrive
) -> None:
    """10 searches per 2 s per token, apart from the burst limit; each answer's headers tell its own limit."""
    for n in range(10):
        found = await api.get("/api/v2/persons/search", params={"term": "Maya", "fields": "name"})
        assert found.headers["x-ratelimit-limit"] == "10"
        assert found.headers["x-ratelimit-remaining"] == str(9 - n)
    limited = await api.get("/api/v2/persons/search", params={"term": "Maya", "fields": "name"})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    other = await api.get("/v1/users/me")
    assert other.status_code == 200 and other.headers["x-ratelimit-limit"] == "80"


async def test_a_colleague_logs_in_with_tokens_of_their_own(fake_pipedrive: FakePipedrive) -> None:
    fake_pipedrive.add_colleague(4242, "Sam Reyes")
    async with httpx.AsyncClient(base_url=fake_pipedrive.base_url, timeout=10) as http:
        code = fake_pipedrive.issue_code(user_id=4242)
        token = await http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": fake_pipedrive.redirect_uri,
            },
            auth=(fake_pipedrive.client_id, fake_pipedrive.client_secret),
        )
        assert token.status_code == 200, token.text
        me = await http.get(
            "/v1/users/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
        )
    assert me.json()["data"]["id"] == 4242
    assert me.json()["data"]["company_id"] == fake_pipedrive.user["company_id"]


async def test_fault_after_the_work_keeps_the_record(
    api: httpx.AsyncClient, fake_pipedrive: FakePipedrive
) -> None:
    fake_pipedrive.inject(502, method="POST", path_prefix="/api/v2/persons", when="after")
    assert (await api.post("/api/v2/persons", json={"name": "Late Answer"})).status_code == 502
    assert [p["name"] for p in fake_pipedrive.persons.values()] == ["Late Answer"]


def test_the_trimmed_v2_description_refuses_wrong_requests_and_answers(fake_pipedrive: FakePipedrive) -> None:
    """Deliberately wrong requests and answers fail the check against the v2 description's trimmed copy."""
    contract = fake_pipedrive.contract
    person = {"name": "Ada", "phones": [{"value": "+14155550100", "primary": True, "label": "work"}]}
    assert contract.request_problems("POST", "/api/v2/persons", {}, person) == []
    assert contract.request_problems("POST", "/api/v2/persons", {}, {"name": "Ada", "phone": "+14155550100"})
    assert contract.request_problems(
        "POST", "/api/v2/persons", {}, {"name": "Ada", "phones": ["+14155550100"]}
    )
    activity = {
        "subject": "Call",
        "type": "call",
        "duration": "00:05",
        "due_date": "2026-03-12",
        "done": True,
    }
    assert contract.request_problems("POST", "/api/v2/activities", {}, activity) == []
    assert contract.request_problems("POST", "/api/v2/activities", {}, {**activity, "related_objects": {}})
    assert contract.request_problems("POST", "/api/v2/activities", {}, {**activity, "duration": 300})
    assert (
        contract.request_problems("GET", "/api/v2/persons/search", {"term": "41", "fields": "phone"}, None)
        == []
    )
    assert contract.request_problems(
        "GET", "/api/v2/persons/search", {"term": "41", "fields": "phone_number"}, None
    )
    assert contract.request_problems("GET", "/api/v2/deals", {"person_id": "1", "status": "active"}, None)
    assert contract.request_problems("GET", "/api/v2/activities", {"start": "0"}, None)
    good = {"success": True, "data": {"id": 1, "subject": "Call", "note": "x"}}
    assert contract.answer_problems("GET", "/api/v2/activities/1", 200, good) == []
    assert contract.answer_problems("GET", "/api/v2/activities/1", 200, {**good, "data": {"id": "1"}})
    wrong = {"success": True, "data": {"id": 1, "related_objects": {"person": {}}}}
    assert contract.answer_problems("GET", "/api/v2/activities/1", 200, wrong)
    item = {"id": 1, "type": "person", "name": "Ada", "phones": [{"value": "+14155550100"}]}
    search = {"success": True, "data": {"items": [{"item": item}]}}
    assert contract.answer_problems("GET", "/api/v2/persons/search", 200, search)


async def test_a_v2_request_the_description_does_not_allow_is_a_400(
    fake_pipedrive: FakePipedrive, pipedrive_tokens: TokenPair, http_client: httpx.AsyncClient
) -> None:
    response = await http_client.get(
        f"{fake_pipedrive.base_url}/api/v2/persons/search",
        params={"term": "4155550100", "fields": "phone", "start": "0"},
        headers={"Authorization": f"Bearer {pipedrive_tokens.access_token}"},
    )
    assert response.status_code == 400 and "start" in response.text
