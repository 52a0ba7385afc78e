"""The fake Redtail's own rules over real HTTP: auth schemes, search semantics, shapes, validation, faults."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from fake_redtail import API_KEY, PASSWORD, USERNAME, FakeRedtail


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def login_header(username: str = USERNAME, password: str = PASSWORD, key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + b64(f"{key}:{username}:{password}")}


@pytest.fixture
def http(fake_redtail: FakeRedtail) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_redtail.api_url, timeout=10) as client:
        yield client


@pytest.fixture
def user_auth(fake_redtail: FakeRedtail) -> dict[str, str]:
    return {"Authorization": "Userkeyauth " + b64(f"{API_KEY}:{fake_redtail.user_key()}")}


def test_authentication_issues_a_stable_user_key(fake_redtail: FakeRedtail, http: httpx.Client) -> None:
    first = http.get("/authentication", headers=login_header())
    assert first.status_code == 200, first.text
    user = first.json()["authenticated_user"]
    assert user["user_key"] == fake_redtail.user_key()
    assert set(user) == {"user_key", "redtail_user_id", "redtail_database_id"}
    assert user["redtail_database_id"] == fake_redtail.user()["database_id"]
    fake_redtail.set_password(USERNAME, "a new one")
    again = http.get("/authentication", headers=login_header(password="a new one"))
    assert again.json()["authenticated_user"]["user_key"] == user["user_key"]
    assert http.get("/authentication", headers=login_header()).status_code == 401  # the old password
    recorded = fake_redtail.requests_to("/api/public/v1/authentication")
    assert all(r.headers["authorization"] == "<redacted>" for r in recorded)


@pytest.mark.parametrize(
    "header",
    [
        login_header(password="wrong"),
        login_header(key="not-the-partner-key"),
        login_header(username="nobody"),
        {"Authorization": "Bearer abc"},
        {},
    ],
)
def test_authentication_refuses_wrong_credentials(http: httpx.Client, header: dict[str, str]) -> None:
    response = http.get("/authentication", headers=header)
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid credentials"}


def test_api_calls_take_the_user_key_or_basic_and_nothing_else(
    fake_redtail: FakeRedtail, http: httpx.Client, user_auth: dict[str, str]
) -> None:
    bare = user_auth["Authorization"].split(" ", 1)[1]
    accepted = [
        user_auth,  # Userkeyauth, the help center's spelling
        {"Authorization": "UserKeyAuth " + bare},  # the API collection's spelling
        {"Authorization": bare},  # no scheme: what the reference connector sends in production
        login_header(),
    ]
    for header in accepted:
        assert http.get("/lists/categories", headers=header).status_code == 200, header
    refused = [
        {"Authorization": "Bearer " + bare},
        {"Authorization": "Userkeyauth " + b64(f"other-key:{fake_redtail.user_key()}")},
        {"Authorization": "Userkeyauth " + b64(f"{API_KEY}:uk-forged")},
        {"Authorization": "Basic " + b64(f"{API_KEY}:{fake_redtail.user_key()}")},
        {},
    ]
    for header in refused:
        assert http.get("/lists/categories", headers=header).status_code == 401, header


def test_search_basic_matches_phone_digits_anywhere_and_pages(
    fake_redtail: FakeRedtail, http: httpx.Client, user_auth: dict[str, str]
) -> None:
    fake_redtail.per_page = 2
    maya = fake_redtail.add_contact("Maya", "Patel", phones=["(415) 555-0142"])
    also = fake_redtail.add_contact("Maya", "Doe", phones=["+1 415.555.0142 x7"])
    fake_redtail.add_contact("Other", "Person", phones=["4155550199"])
    longer = fake_redtail.add_contact("Long", "Number", phones=["1-415-555-0142"])
    first = http.get(
        "/contacts/search_basic", params={"phone_number": "4155550142"}, headers=user_auth
    ).json()
    assert first["meta"] == {"total_records": 3, "total_pages": 2}
    assert [c["id"] for c in first["contacts"]] == [maya["id"], also["id"]]
    assert "phones" not in first["contacts"][0]  # basic records: phones are a separate resource
    second = http.get(
        "/contacts/search_basic", params={"phone_number": "415-555-0142", "page": 2}, headers=user_auth
    ).json()
    assert [c["id"] for c in second["contacts"]] == [longer["id"]]
    phones = http.get(f"/contacts/{maya['id']}/phones", headers=user_auth).json()["phones"]
    assert [p["number"] for p in phones] == ["(415) 555-0142"]
    by_name = http.get("/contacts/search_basic", params={"name": "patel"}, headers=user_auth).json()
    assert [c["id"] for c in by_name["contacts"]] == [maya["id"]]
    bad = http.get("/contacts/search_basic", params={"phone_number": "abc"}, headers=user_auth)
    assert bad.status_code == 422 and bad.json() == {"errors": ["Phone number must contain digits"]}


def test_contact_create_validates_and_answers_the_contact(
    fake_redtail: FakeRedtail, http: httpx.Client, user_auth: dict[str, str]
) -> None:
    refused = http.post("/contacts", json={"type": "Person", "first_name": "A"}, headers=user_auth)
    assert refused.status_code == 422
    assert refused.json()["errors"] == ["Type is not included in the list"]
    blank = http.post(
        "/contacts",
        json={
            "type": "Crm::Contact::Individual",
            "first_name": "A",
            "phones": [{"number": "", "phone_type": 6}],
        },
        headers=user_auth,
    )
    assert blank.json()["errors"] == ["Last name can't be blank", "Phone number can't be blank"]
    made = http.post(
        "/contacts",
        json={
            "type": "Crm::Contact::Individual",
            "first_name": "Maya",
            "last_name": "Patel",
            "phones": [{"phone_type": 6, "number": "4155550142", "country_code": 1}],
        },
        headers=user_auth,
    )
    assert made.status_code == 201
    contact = made.json()["contact"]
    assert contact["full_name"] == "Maya Patel"
    assert fake_redtail.phones[contact["id"]][0]["number"] == "4155550142"


def test_activity_lifecycle_with_include_header_notes_and_paging(
    fake_redtail: FakeRedtail, http: httpx.Client, user_auth: dict[str, str]
) -> None:
    maya = fake_redtail.add_contact("Maya", "Patel", phones=["4155550142"])
    body = {
        "subject": "Call",
        "description": "<b>hi</b>",
        "start_date": "2026-03-12T14:35:20Z",
        "end_date": "2026-03-12T14:43:27Z",
        "activity_code_id": 3,
        "category_id": 2,
        "repeats": "never",
        "linked_contacts": [{"contact_id": maya["id"]}],
    }
    created = http.post("/activities", json=body, headers=user_auth)
    assert created.status_code == 201, created.text
    activity = created.json()["activity"]
    assert activity["completed"] is False and "linked_contacts" not in activity
    path = f"/activities/{activity['id']}"
    plain = http.get(path, headers=user_auth).json()["activity"]
    assert "linked_contacts" not in plain
    expanded = http.get(path, headers={**user_auth, "include": "linked_contacts"}).json()["activity"]
    assert expanded["linked_contacts"] == [
        {"contact_id": maya["id"], "first_name": "Maya", "last_name": "Patel"}
    ]
    assert http.put(path, json={"completed": True}, headers=user_auth).json()["activity"]["completed"] is True
    assert (
        http.patch(path, json={"description": "new"}, headers=user_auth).json()["activity"]["description"]
        == "new"
    )
    note = http.post(f"{path}/notes", json={"category_id": 2, "note_type": 1, "body": "n"}, headers=user_auth)
    assert note.status_code == 201
    assert [n["body"] for n in http.get(f"{path}/notes", headers=user_auth).json()["notes"]] == ["n"]
    listed = http.get(f"/contacts/{maya['id']}/activities", headers=user_auth).json()
    assert [a["id"] for a in listed["activities"]] == [activity["id"]]
    assert listed["meta"]["total_pages"] == 1


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"subject": ""}, "Subject can't be blank"),
        ({"start_date": "yesterday"}, "Start date is not a valid date"),
        ({"end_date": "2026-03-12T14:00:00Z"}, "End date must be after the start date"),
        ({"category_id": 4}, "Category does not exist"),
        ({"category_id": "2"}, "category_id is not a number"),
        ({"linked_contacts": [{"contact_id": 1}]}, "Linked contacts must name existing contacts"),
        ({"owner": 1}, "Unknown attributes: owner"),
    ],
)
def test_activity_validation(
    fake_redtail: FakeRedtail,
    http: httpx.Client,
    user_auth: dict[str, str],
    change: dict[str, object],
    error: str,
) -> None:
    body: dict[str, object] = {
        "subject": "Call",
        "start_date": "2026-03-12T14:35:20Z",
        "end_date": "2026-03-12T14:43:27Z",
        **change,
    }
    response = http.post("/activities", json=body, headers=user_auth)
    assert response.status_code == 422
    assert response.json() == {"errors": [error]}
    assert fake_redtail.activities == {}


def test_unknown_records_are_404(http: httpx.Client, user_auth: dict[str, str]) -> None:
    assert http.get("/activities/1", headers=user_auth).status_code == 404
    assert http.put("/activities/1", json={"completed": True}, headers=user_auth).json() == {
        "error": "Activity not found"
    }
    assert http.get("/contacts/1/phones", headers=user_auth).status_code == 404


def test_faults_after_the_work_and_429(
    fake_redtail: FakeRedtail, http: httpx.Client, user_auth: dict[str, str]
) -> None:
    maya = fake_redtail.add_contact("Maya", "Patel", phones=["4155550142"])
    fake_redtail.inject(502, path_prefix="/api/public/v1/activities", method="POST", when="after")
    body = {
        "subject": "Call",
        "start_date": "2026-03-12T14:35:20Z",
        "end_date": "2026-03-12T14:35:20Z",
        "linked_contacts": [{"contact_id": maya["id"]}],
    }
    assert http.post("/activities", json=body, headers=user_auth).status_code == 502
    assert len(fake_redtail.activities) == 1  # the work was done, the answer lost
    fake_redtail.inject(429, retry_after=3, path_prefix="/api/public/v1/lists")
    limited = http.get("/lists/categories", headers=user_auth)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    assert not any(h.lower().startswith("x-ratelimit") for h in limited.headers)


def test_rate_limit_per_user_answers_429_with_retry_after(
    fake_redtail: FakeRedtail, http: httpx.Client, user_auth: dict[str, str]
) -> None:
    fake_redtail.rate_limit.limit = 2
    assert http.get("/lists/categories", headers=user_auth).status_code == 200
    assert http.get("/lists/categories", headers=login_header()).status_code == 200  # the same user
    limited = http.get("/lists/categories", headers=user_auth)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json() == {"error": "Too many requests"}
