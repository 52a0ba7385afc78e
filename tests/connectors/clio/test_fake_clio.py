"""FakeClio's own rules over real HTTP: the things the connector tests rely on it to enforce."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fake_clio import DEFAULT_REDIRECT_URI, FakeClio


@pytest.fixture
def api(fake_clio: FakeClio) -> Iterator[httpx.Client]:
    tokens = fake_clio.issue_tokens()
    with httpx.Client(
        base_url=fake_clio.base_url, headers={"Authorization": f"Bearer {tokens.access_token}"}, timeout=5
    ) as client:
        yield client


def test_oauth_code_is_bound_to_its_region_and_client_credentials_go_in_the_form(fake_clio: FakeClio) -> None:
    eu_id, eu_secret = fake_clio.clients["eu"]
    us_id, us_secret = fake_clio.clients[""]
    with httpx.Client(base_url=fake_clio.base_url, timeout=5) as http:
        consent = http.get(
            "/oauth/authorize",
            params={
                "client_id": eu_id,
                "response_type": "code",
                "redirect_uri": DEFAULT_REDIRECT_URI,
                "state": "s",
            },
        )
        assert consent.status_code == 302
        code = parse_qs(urlsplit(consent.headers["location"]).query)["code"][0]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": DEFAULT_REDIRECT_URI}
        wrong_region = http.post(
            "/oauth/token", data={**form, "client_id": us_id, "client_secret": us_secret}
        )
        assert wrong_region.status_code == 400 and wrong_region.json()["error"] == "invalid_grant"
        code = fake_clio.issue_code("eu")
        bad_secret = http.post(
            "/oauth/token", data={**form, "code": code, "client_id": eu_id, "client_secret": "x"}
        )
        assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
        tokens = http.post(
            "/oauth/token", data={**form, "code": code, "client_id": eu_id, "client_secret": eu_secret}
        )
        assert tokens.status_code == 200, tokens.text
        body = tokens.json()
        assert body["token_type"] == "bearer" and body["refresh_token"] and body["expires_in"] == 3600
        reused = http.post(
            "/oauth/token", data={**form, "code": code, "client_id": eu_id, "client_secret": eu_secret}
        )
        assert reused.json()["error"] == "invalid_grant"
        basic = base64.b64encode(f"{eu_id}:{eu_secret}".encode()).decode()
        refreshed = http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert refreshed.status_code == 200
        assert "refresh_token" not in refreshed.json()  # Clio keeps the refresh token it gave
        access = refreshed.json()["access_token"]
        assert fake_clio.is_access_token_valid(access)
        out = http.post(
            "/oauth/deauthorize", data={"token": access}, headers={"Authorization": f"Bearer {access}"}
        )
        assert out.status_code == 200
        assert not fake_clio.is_access_token_valid(access)
        assert not fake_clio.is_refresh_token_valid(body["refresh_token"])
    assert all(
        r.form is None or r.form.get("client_secret") in (None, "<redacted>") for r in fake_clio.requests
    )


def test_bearer_expires_and_errors_use_clios_envelope(fake_clio: FakeClio, api: httpx.Client) -> None:
    assert httpx.get(f"{fake_clio.base_url}/api/v4/users/who_am_i.json").status_code == 401
    fake_clio.advance_time(3601)
    expired = api.get("/api/v4/users/who_am_i.json")
    assert expired.status_code == 401
    assert expired.json()["error"]["type"] == "AuthenticationError"


def test_fields_are_honoured_and_unknown_ones_refused(fake_clio: FakeClio, api: httpx.Client) -> None:
    contact = fake_clio.add_contact("Maya Patel", ["(415) 555-0142"])
    bare = api.get(f"/api/v4/contacts/{contact['id']}.json").json()["data"]
    assert bare == {"id": contact["id"], "etag": contact["etag"]}
    nested_default = api.get(f"/api/v4/contacts/{contact['id']}.json", params={"fields": "id,phone_numbers"})
    assert set(nested_default.json()["data"]["phone_numbers"][0]) == {"id", "etag"}
    full = api.get(f"/api/v4/contacts/{contact['id']}.json", params={"fields": "name,phone_numbers{number}"})
    assert full.json()["data"] == {"name": "Maya Patel", "phone_numbers": [{"number": "(415) 555-0142"}]}
    unknown = api.get("/api/v4/contacts.json", params={"fields": "id,nickname"})
    assert unknown.status_code == 400
    assert unknown.json() == {"error": {"type": "ArgumentError", "message": "Invalid fields: nickname"}}
    assert api.get("/api/v4/contacts.json", params={"fields": "phone_numbers{colour}"}).status_code == 400


def test_query_is_a_substring_of_the_stored_text(fake_clio: FakeClio, api: httpx.Client) -> None:
    maya = fake_clio.add_contact("Maya Patel", ["(415) 555-0142"])
    fake_clio.add_contact("Sam Ortiz", ["415.555.0199"])

    def ids(term: str) -> list[int]:
        body = api.get("/api/v4/contacts.json", params={"query": term, "fields": "id"}).json()
        return [c["id"] for c in body["data"]]

    assert ids("555-0142") == [maya["id"]]
    assert ids("4155550142") == []  # stored text, not digits: the formatted number holds no such run
    assert ids("maya") == [maya["id"]]
    assert len(ids("415")) == 2


def test_lists_page_with_absolute_next_urls(fake_clio: FakeClio, api: httpx.Client) -> None:
    for index in range(5):
        fake_clio.add_contact(f"Person {index}", [f"+1 415 555 01{index:02d}"])
    seen: list[str] = []
    url: str | None = "/api/v4/contacts.json?fields=name&limit=2"
    while url:
        body = api.get(url).json()
        seen += [c["name"] for c in body["data"]]
        url = body["meta"]["paging"].get("next")
        assert url is None or url.startswith(fake_clio.base_url)
    assert seen == [f"Person {i}" for i in range(5)]
    assert api.get("/api/v4/contacts.json", params={"limit": 201}).status_code == 400


def test_bodies_must_be_wrapped_and_valid(fake_clio: FakeClio, api: httpx.Client) -> None:
    unwrapped = api.post("/api/v4/contacts.json", json={"name": "Maya", "type": "Person"})
    assert unwrapped.status_code == 400
    bad_type = api.post("/api/v4/contacts.json", json={"data": {"name": "Maya", "type": "Lead"}})
    assert bad_type.status_code == 422
    assert bad_type.json()["error"]["type"] == "RecordInvalid"
    assert bad_type.json()["error"]["message"].startswith("Validation failed:")
    bad_phone = api.post(
        "/api/v4/contacts.json",
        json={"data": {"name": "Maya", "type": "Person", "phone_numbers": [{"name": "Desk", "number": "1"}]}},
    )
    assert bad_phone.status_code == 422
    assert fake_clio.contacts == {}
    made = api.post(
        "/api/v4/contacts.json",
        params={"fields": "id,name,type"},
        json={
            "data": {"name": "Acme", "type": "Company", "phone_numbers": [{"name": "Work", "number": "+1"}]}
        },
    )
    assert made.status_code == 201 and made.json()["data"]["type"] == "Company"
    no_party = api.post(
        "/api/v4/communications.json",
        json={
            "data": {
                "type": "PhoneCommunication",
                "senders": [{"id": 1, "type": "Contact"}],
                "receivers": [{"id": fake_clio.user["id"], "type": "User"}],
            }
        },
    )
    assert no_party.status_code == 422
    assert fake_clio.communications == {}


def test_communication_parties_carry_the_contact_type(fake_clio: FakeClio, api: httpx.Client) -> None:
    acme = fake_clio.add_contact("Acme", ["+1 415 555 0100"], type="Company")
    matter = fake_clio.add_matter("Lease dispute", client_id=acme["id"])
    made = api.post(
        "/api/v4/communications.json",
        params={"fields": "id,senders{id,type,name},matter{id}"},
        json={
            "data": {
                "type": "PhoneCommunication",
                "subject": "s",
                "body": "b",
                "received_at": "2026-03-12T14:35:20Z",
                "senders": [{"id": acme["id"], "type": "Contact"}],
                "receivers": [{"id": fake_clio.user["id"], "type": "User"}],
                "matter": {"id": matter["id"]},
            }
        },
    )
    assert made.status_code == 201, made.text
    data = made.json()["data"]
    assert data["senders"] == [{"id": acme["id"], "type": "Company", "name": "Acme"}]
    assert data["matter"] == {"id": matter["id"]}
    listed = api.get("/api/v4/communications.json", params={"contact_id": acme["id"], "fields": "id"})
    assert [c["id"] for c in listed.json()["data"]] == [data["id"]]


def test_rate_limit_headers_and_429(fake_clio: FakeClio, api: httpx.Client) -> None:
    fake_clio.rate_limit.limit = 2
    first = api.get("/api/v4/users/who_am_i.json")
    assert first.headers["X-RateLimit-Limit"] == "2" and first.headers["X-RateLimit-Remaining"] == "1"
    assert int(first.headers["X-RateLimit-Reset"]) > fake_clio.now()
    api.get("/api/v4/users/who_am_i.json")
    limited = api.get("/api/v4/users/who_am_i.json")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["type"] == "RateLimited"


def test_time_entries_are_validated_and_filtered_by_communication(
    fake_clio: FakeClio, api: httpx.Client
) -> None:
    maya = fake_clio.add_contact("Maya Patel", ["+1 415 555 0100"])
    made = api.post(
        "/api/v4/communications.json",
        json={
            "data": {
                "type": "PhoneCommunication",
                "senders": [{"id": maya["id"], "type": "Contact"}],
                "receivers": [{"id": fake_clio.user["id"], "type": "User"}],
            }
        },
    ).json()["data"]
    entry = {"type": "TimeEntry", "quantity": 95, "date": "2026-03-12", "communication": {"id": made["id"]}}
    assert api.post("/api/v4/activities.json", json={"data": {**entry, "quantity": "95"}}).status_code == 422
    assert (
        api.post("/api/v4/activities.json", json={"data": {**entry, "communication": {"id": 1}}}).status_code
        == 422
    )
    assert (
        api.post("/api/v4/activities.json", json={"data": {**entry, "date": "12/03/2026"}}).status_code == 422
    )
    created = api.post("/api/v4/activities.json", json={"data": entry})
    assert created.status_code == 201
    listed = api.get(
        "/api/v4/activities.json",
        params={"communication_id": made["id"], "fields": "id,quantity,communication"},
    ).json()["data"]
    assert listed == [
        {
            "id": created.json()["data"]["id"],
            "quantity": 95,
            "communication": {"id": made["id"], "etag": '"x"'},
        }
    ]
