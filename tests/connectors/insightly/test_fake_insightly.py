"""FakeInsightly's own rules over real HTTP: auth per key and pod, exact search, validation, links, limits."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from fake_insightly import FakeInsightly


@pytest.fixture
def api(fake_insightly: FakeInsightly) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{fake_insightly.base_url}/v3.1", auth=(fake_insightly.default_key, ""), timeout=5
    ) as client:
        yield client


def test_basic_auth_with_a_key_of_this_pod_only(fake_insightly: FakeInsightly, api: httpx.Client) -> None:
    me = api.get("/Users/Me")
    assert me.status_code == 200 and me.json()["USER_ID"] == fake_insightly.user_id_of(
        fake_insightly.default_key
    )
    assert me.headers["X-RateLimit-Limit"] == "10000" and me.headers["X-RateLimit-Remaining"] == "9999"
    base = f"{fake_insightly.base_url}/v3.1/Users/Me"
    assert (
        httpx.get(base, auth=(fake_insightly.default_key, "anything")).status_code == 200
    )  # password ignored
    refused = httpx.get(base)
    assert refused.status_code == 401
    assert refused.json() == {"Message": "Authorization has been denied for this request."}
    assert httpx.get(base, auth=("nope", "")).status_code == 401
    other_pod = fake_insightly.add_user("Eve", "Other", pod="eu1")
    assert httpx.get(base, auth=(other_pod, "")).status_code == 401
    same_pod = fake_insightly.add_user("Ann", "Second")
    assert httpx.get(base, auth=(same_pod, "")).json()["FIRST_NAME"] == "Ann"
    assert all(r.headers.get("authorization") in (None, "<redacted>") for r in fake_insightly.requests)


def test_paths_are_case_insensitive(api: httpx.Client) -> None:
    assert api.get("/users/me").status_code == 200
    assert api.get("/USERS/ME").status_code == 200


def test_search_is_exact_on_the_stored_value(fake_insightly: FakeInsightly, api: httpx.Client) -> None:
    fake_insightly.add_contact("Maya", "Patel", phone="(415) 555-0100", custom={"Work__c": "+14155550100"})
    fake_insightly.add_contact("Sam", "patel", phone="4155550100")

    def ids(**params: object) -> list[str]:
        response = api.get("/Contacts/Search", params=params)
        assert response.status_code == 200, response.text
        assert isinstance(response.json(), list)
        return [c["FIRST_NAME"] for c in response.json()]

    assert ids(field_name="PHONE", field_value="(415) 555-0100") == ["Maya"]
    assert ids(field_name="PHONE", field_value="415") == []  # no partial match
    assert ids(field_name="phone", field_value="4155550100") == ["Sam"]
    assert ids(field_name="LAST_NAME", field_value="PATEL") == ["Maya", "Sam"]  # case aside
    assert ids(field_name="Work__c", field_value="+14155550100") == ["Maya"]  # a custom field
    assert ids(field_name="LAST_NAME", field_value="Patel", top=1, skip=1) == ["Sam"]
    assert ids(updated_after_utc="2000-01-01T00:00:00Z") == ["Maya", "Sam"]
    assert ids(updated_after_utc="2999-01-01T00:00:00Z") == []
    full = api.get("/Contacts/Search", params={"field_name": "LAST_NAME", "field_value": "Patel"}).json()
    brief = api.get(
        "/Contacts/Search", params={"field_name": "LAST_NAME", "field_value": "Patel", "brief": "true"}
    ).json()
    assert "LINKS" in full[0] and "CUSTOMFIELDS" in full[0]
    assert "LINKS" not in brief[0] and "CUSTOMFIELDS" not in brief[0]
    counted = api.get(
        "/Contacts/Search",
        params={"updated_after_utc": "2000-01-01T00:00:00Z", "count_total": "true", "top": 1},
    )
    assert counted.headers["X-Total-Count"] == "2" and len(counted.json()) == 1


def test_each_object_searches_its_own_phone_fields(fake_insightly: FakeInsightly, api: httpx.Client) -> None:
    """Insightly v3.1: a Lead's mobile is `MOBILE`, a Contact's `PHONE_MOBILE`; the other name is a 400."""
    lead = fake_insightly.add_lead("Sam", "Rivera", mobile="+14155550100")
    assert lead["MOBILE"] == "+14155550100" and "PHONE_MOBILE" not in lead
    found = api.get("/Leads/Search", params={"field_name": "MOBILE", "field_value": "+14155550100"})
    assert [r["LEAD_ID"] for r in found.json()] == [lead["LEAD_ID"]]
    for path, field in (("/Leads/Search", "PHONE_MOBILE"), ("/Contacts/Search", "MOBILE")):
        refused = api.get(path, params={"field_name": field, "field_value": "+14155550100"})
        assert refused.status_code == 400 and set(refused.json()) == {"Message"}
    assert api.post("/Leads", json={"LAST_NAME": "Rivera", "PHONE_MOBILE": "1"}).status_code == 400


@pytest.mark.parametrize(
    "params",
    [
        {"field_name": "NOPE", "field_value": "x"},
        {"field_name": "PHONE"},
        {"top": "501"},
        {"top": "x"},
        {"updated_after_utc": "yesterday"},
    ],
)
def test_bad_searches_are_400_with_a_message(api: httpx.Client, params: dict[str, str]) -> None:
    response = api.get("/Leads/Search", params=params)
    assert response.status_code == 400
    assert set(response.json()) == {"Message"}


def test_creates_validate_like_insightly(fake_insightly: FakeInsightly, api: httpx.Client) -> None:
    contact = api.post("/Contacts", json={"FIRST_NAME": "Maya", "PHONE": "+14155550100"})
    assert contact.status_code == 200 and contact.json()["CONTACT_ID"] > 0
    assert contact.json()["OWNER_USER_ID"] == fake_insightly.user_id_of(fake_insightly.default_key)
    for path, body in [
        ("/Contacts", {"LAST_NAME": "NoFirst"}),
        ("/Leads", {"FIRST_NAME": "NoLast"}),
        ("/Contacts", {"FIRST_NAME": "Maya", "NOT_A_FIELD": 1}),
        ("/Contacts", {"FIRST_NAME": "Maya", "CONTACT_ID": 5}),
        ("/Events", {"TITLE": "x", "START_DATE_UTC": "2026-03-12T14:00:00Z"}),
        (
            "/Events",
            {"TITLE": "x", "START_DATE_UTC": "2026-03-12T14:00:00Z", "END_DATE_UTC": "2026-03-12T13:00:00Z"},
        ),
        ("/Events", {"TITLE": "x", "START_DATE_UTC": "12/03/2026", "END_DATE_UTC": "2026-03-12T13:00:00Z"}),
        (
            "/Events",
            {
                "TITLE": "x",
                "START_DATE_UTC": "2026-03-12T14:00:00Z",
                "END_DATE_UTC": "2026-03-12T15:00:00Z",
                "OWNER_USER_ID": 1,
            },
        ),
    ]:
        refused = api.post(path, json=body)
        assert refused.status_code == 400, (path, body, refused.text)
        assert isinstance(refused.json()["Message"], str)
    assert len(fake_insightly.all_contacts()) == 1 and fake_insightly.all_leads() == []


def test_events_update_by_body_id_and_links(fake_insightly: FakeInsightly, api: httpx.Client) -> None:
    contact = fake_insightly.add_contact("Maya", "Patel")
    created = api.post(
        "/Events",
        json={
            "TITLE": "Call",
            "START_DATE_UTC": "2026-03-12T14:00:00Z",
            "END_DATE_UTC": "2026-03-12T14:05:00Z",
        },
    ).json()
    event_id = created["EVENT_ID"]
    assert created["START_DATE_UTC"] == "2026-03-12 14:00:00"
    assert api.put("/Events", json={"DETAILS": "x"}).status_code == 400
    assert api.put("/Events", json={"EVENT_ID": 1, "DETAILS": "x"}).status_code == 404
    updated = api.put("/Events", json={"EVENT_ID": event_id, "DETAILS": "notes"}).json()
    assert (updated["DETAILS"], updated["TITLE"]) == ("notes", "Call")  # a PUT changes only what it names

    link = {"LINK_OBJECT_NAME": "contact", "LINK_OBJECT_ID": contact["CONTACT_ID"]}
    first = api.post(f"/Events/{event_id}/Links", json=link).json()
    assert first["LINK_OBJECT_NAME"] == "Contact"
    api.post(f"/Events/{event_id}/Links", json=link)  # Insightly does not refuse a second identical link
    assert len(api.get(f"/Events/{event_id}/Links").json()) == 2
    assert (
        api.post(
            f"/Events/{event_id}/Links", json={"LINK_OBJECT_NAME": "Planet", "LINK_OBJECT_ID": 1}
        ).status_code
        == 400
    )
    assert (
        api.post(
            f"/Events/{event_id}/Links", json={"LINK_OBJECT_NAME": "Contact", "LINK_OBJECT_ID": 1}
        ).status_code
        == 400
    )
    assert api.post("/Events/1/Links", json=link).status_code == 404
    assert api.delete(f"/Events/{event_id}/Links/{first['LINK_ID']}").status_code == 202
    assert api.delete(f"/Events/{event_id}/Links/{first['LINK_ID']}").status_code == 404
    assert len(fake_insightly.event(event_id)["LINKS"]) == 1
    assert api.get("/Events/1").status_code == 404


def test_rate_limit_and_faults(fake_insightly: FakeInsightly, api: httpx.Client) -> None:
    fake_insightly.rate_limit.limit = 2
    assert api.get("/Users/Me").headers["X-RateLimit-Remaining"] == "1"
    assert api.get("/Users/Me").headers["X-RateLimit-Remaining"] == "0"
    limited = api.get("/Users/Me")
    assert limited.status_code == 429
    assert limited.headers["X-RateLimit-Remaining"] == "0" and int(limited.headers["Retry-After"]) >= 1
    fake_insightly.rate_limit.limit = 10_000
    fake_insightly.advance_time(86_401)
    fake_insightly.inject(500, path_prefix="/v3.1/contacts", method="POST", when="after")
    assert api.post("/Contacts", json={"FIRST_NAME": "Maya"}).status_code == 500
    assert [c["FIRST_NAME"] for c in fake_insightly.all_contacts()] == ["Maya"]  # done, answer lost


def test_the_trimmed_description_refuses_what_insightly_refuses(fake_insightly: FakeInsightly) -> None:
    """Deliberately wrong requests and answers fail the check against the published description's trimmed copy."""
    contract = fake_insightly.contract
    event = {"TITLE": "x", "START_DATE_UTC": "2026-03-12T14:00:00Z", "END_DATE_UTC": "2026-03-12T14:05:00Z"}
    assert contract.request_problems("POST", "/v3.1/events", {}, event) == []
    assert contract.request_problems("POST", "/v3.1/events", {}, {**event, "NOTE": "x"})
    assert contract.request_problems(
        "POST", "/v3.1/events", {}, {**event, "END_DATE_UTC": "2026-03-12 14:05:00"}
    )
    assert contract.request_problems("POST", "/v3.1/leads", {}, {"FIRST_NAME": "Sam"})
    assert contract.request_problems("POST", "/v3.1/leads", {}, {"LAST_NAME": "Rivera", "PHONE_MOBILE": "1"})
    assert contract.request_problems("POST", "/v3.1/leads", {}, {"LAST_NAME": "Rivera", "MOBILE": "1"}) == []
    assert contract.request_problems("GET", "/v3.1/contacts/search", {"fieldname": "PHONE"}, None)
    assert contract.request_problems("GET", "/v3.1/contacts/search", {"top": "many"}, None)
    assert contract.request_problems("GET", "/v3.1/notes", {}, None)
    lead = {"LEAD_ID": 1, "LAST_NAME": "Rivera", "LEAD_SOURCE_ID": 1, "LEAD_STATUS_ID": 1}
    assert contract.answer_problems("GET", "/v3.1/leads/1", 200, lead) == []
    assert contract.answer_problems("GET", "/v3.1/leads/1", 200, {**lead, "PHONE_MOBILE": "1"})
    assert contract.answer_problems("GET", "/v3.1/leads/search", 200, [{**lead, "LEAD_ID": "1"}])


def test_a_request_the_description_does_not_allow_is_a_400(api: httpx.Client) -> None:
    refused = api.get("/Contacts/Search", params={"field_name": "PHONE", "field_value": "1", "orderby": "x"})
    assert refused.status_code == 400 and "orderby" in refused.json()["Message"]


def test_only_basic_auth_with_the_key_as_user_name_is_accepted(fake_insightly: FakeInsightly) -> None:
    """Insightly takes `Basic base64(<key>:)` only: the key as a bearer token, bare or unencoded is refused."""
    base = f"{fake_insightly.base_url}/v3.1/Users/Me"
    key = fake_insightly.default_key
    encoded = base64.b64encode(f"{key}:".encode()).decode()
    assert httpx.get(base, headers={"Authorization": f"Basic {encoded}"}).status_code == 200
    for header in (f"Bearer {key}", encoded, f"Basic {key}", f"Bearer {encoded}"):
        assert httpx.get(base, headers={"Authorization": header}).status_code == 401, header
