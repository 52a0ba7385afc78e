"""The embedded test CRM over a real uvicorn server and a real SQLite file."""

from __future__ import annotations

import base64
import hashlib
import itertools
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appconnect.embedded_crm import create_testcrm_app
from tests.support.live_server import serve_asgi

SEED_KEY = "seed-key-for-tests"
ADMIN_TOKEN = "admin-token-for-tests"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
_numbers = itertools.count(1000)


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def fresh_number() -> str:
    """A phone number no other test uses, so tests sharing the CRM never see each other's contacts."""
    return f"+1415{next(_numbers):07d}"


class Crm:
    def __init__(self, base_url: str, db_path: Path) -> None:
        self.base_url = base_url
        self.db_path = db_path
        self.client = httpx.Client(base_url=f"{base_url}/api/v1", headers=basic(SEED_KEY), timeout=10)
        self.raw = httpx.Client(base_url=base_url, timeout=10)
        self.admin = httpx.Client(base_url=base_url, timeout=10, headers=ADMIN)

    def count(self, sql: str, *params: Any) -> int:
        with sqlite3.connect(self.db_path) as conn:
            return int(conn.execute(sql, params).fetchone()[0])

    def contact(self, name: str = "Jane Doe", *numbers: str, **extra: Any) -> dict[str, Any]:
        phones = [{"label": "Work", "number": n} for n in (numbers or (fresh_number(),))]
        body = {"name": name, "type": "contact", "phones": phones, **extra}
        response = self.client.post("/contacts", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crm]:
    db_path = tmp_path_factory.mktemp("testcrm") / "testcrm.sqlite3"
    app = create_testcrm_app(f"sqlite+aiosqlite:///{db_path}", seed_api_key=SEED_KEY, admin_token=ADMIN_TOKEN)
    with serve_asgi(app, lifespan="on") as base_url:
        crm = Crm(base_url, db_path)
        yield crm
        crm.client.close()
        crm.raw.close()
        crm.admin.close()


@pytest.fixture(autouse=True)
def no_faults(crm: Crm) -> Iterator[None]:
    yield
    crm.admin.delete("/api/_faults")


# --- auth ---------------------------------------------------------------------------------------------------


def test_every_api_route_requires_a_known_api_key(crm: Crm) -> None:
    bad_headers = (
        {},
        basic("wrong-key"),
        {"Authorization": f"Bearer {SEED_KEY}"},
        {"Authorization": "Basic !!"},
    )
    for headers in bad_headers:
        for method, path in (
            ("GET", "/me"),
            ("GET", "/contacts"),
            ("POST", "/contacts"),
            ("GET", "/activities/1"),
            ("PATCH", "/activities/1"),
        ):
            response = crm.raw.request(method, f"/api/v1{path}", headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)
            assert response.json() == {"error": "invalid_api_key"}


def test_me_returns_the_seeded_user(crm: Crm) -> None:
    me = crm.client.get("/me").json()
    assert me == {
        "id": 1,
        "name": "Test CRM User",
        "email": me["email"],
        "timezone_name": "America/Los_Angeles",
        "timezone_offset": "-08:00",
    }


def test_new_api_key_is_a_new_user_and_is_stored_hashed(crm: Crm) -> None:
    response = crm.admin.post("/api/v1/api-keys", json={"name": "Isolated Tester"})
    assert response.status_code == 201
    created = response.json()
    key, user = created["apiKey"], created["user"]
    assert user["name"] == "Isolated Tester" and user["id"] != 1
    me = crm.raw.get("/api/v1/me", headers=basic(key)).json()
    assert me["id"] == user["id"] and me["name"] == "Isolated Tester"
    assert crm.count("SELECT count(*) FROM api_keys WHERE key_hash = ?", key) == 0
    assert (
        crm.count(
            "SELECT count(*) FROM api_keys WHERE key_hash = ?", hashlib.sha256(key.encode()).hexdigest()
        )
        == 1
    )
    assert crm.admin.post("/api/v1/api-keys", json={"name": ""}).status_code == 400


# --- contacts -----------------------------------------------------------------------------------------------


def test_create_contact_and_find_it_by_each_of_its_phones(crm: Crm) -> None:
    work, mobile = fresh_number(), fresh_number()
    contact = crm.contact("Ada Lovelace", work, mobile, email="ada@example.com", company="Engines Ltd")
    assert contact["name"] == "Ada Lovelace" and contact["type"] == "contact"
    assert [p["number"] for p in contact["phones"]] == [work, mobile]
    assert contact["owner_id"] == 1 and contact["created_at"].endswith("Z")
    for number in (work, mobile):
        found = crm.client.get("/contacts", params={"phone": number}).json()["data"]
        assert [c["id"] for c in found] == [contact["id"]]
        assert found[0]["email"] == "ada@example.com" and found[0]["company"] == "Engines Ltd"
    assert crm.client.get(f"/contacts/{contact['id']}").json() == contact
    assert crm.client.get("/contacts", params={"phone": fresh_number()}).json() == {"data": []}


def test_phone_lookup_ignores_formatting_and_a_plus_decoded_as_space(crm: Crm) -> None:
    number = fresh_number()  # +1415NNNNNNN
    formatted = f"+1 ({number[2:5]}) {number[5:8]}-{number[8:]}"
    contact = crm.contact("Formatted Phone", formatted)
    assert contact["phones"][0]["number"] == formatted
    for query in (number, formatted, number.replace("+", " ")):
        found = crm.client.get("/contacts", params={"phone": query}).json()["data"]
        assert [c["id"] for c in found] == [contact["id"]], query
    # an unencoded "+" in the query string arrives as a space
    raw = crm.client.get(f"/contacts?phone={number}").json()["data"]
    assert [c["id"] for c in raw] == [contact["id"]]


def test_phone_search_is_loose_and_keeps_numbers_as_typed(crm: Crm) -> None:
    """Like a real CRM's: digits containing the term match, whatever the format; clients re-check."""
    line = fresh_number()[-4:]
    typed = [f"(415) 777-{line}", f"415.777.{line} x12", f"+44 415 777 {line}", f"1-415-777-{line}"]
    ids = [crm.contact(f"Typed {n}", n)["id"] for n in typed]
    found = crm.client.get("/contacts", params={"phone": f"415777{line}"}).json()["data"]
    assert {c["id"] for c in found} >= set(ids)
    assert {p["number"] for c in found if c["id"] in ids for p in c["phones"]} == set(typed)
    short = crm.contact("Extension Owner", "ext 2001")
    assert [c["id"] for c in crm.client.get("/contacts", params={"phone": "2001"}).json()["data"]] == [
        short["id"]
    ]


def test_several_contacts_may_share_a_number(crm: Crm) -> None:
    shared = fresh_number()
    first = crm.contact("Shared One", shared)
    second = crm.contact("Shared Two", fresh_number(), shared)
    found = crm.client.get("/contacts", params={"phone": shared}).json()["data"]
    assert sorted(c["id"] for c in found) == sorted([first["id"], second["id"]])


def test_find_by_name_is_a_case_insensitive_substring_match(crm: Crm) -> None:
    contact = crm.contact("Grace Hopper-Zeta")
    found = crm.client.get("/contacts", params={"name": "hopper-z"}).json()["data"]
    assert [c["id"] for c in found] == [contact["id"]]
    assert crm.client.get("/contacts", params={"name": "Hop%Zeta"}).json() == {"data": []}  # % is literal
    assert any(c["id"] == contact["id"] for c in crm.client.get("/contacts").json()["data"])


def test_missing_contact_is_404(crm: Crm) -> None:
    response = crm.client.get("/contacts/999999")
    assert response.status_code == 404 and response.json() == {"error": "not_found"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "contact", "phones": []}, "name"),
        ({"name": "   ", "type": "contact"}, "name"),
        ({"name": 42, "type": "contact"}, "name"),
        ({"name": "X", "type": "customer"}, "type"),
        ({"name": "X"}, "type"),
        ({"name": "X", "type": "lead", "phones": "+14155550100"}, "phones"),
        ({"name": "X", "type": "lead", "phones": ["+14155550100"]}, "phones[0]"),
        ({"name": "X", "type": "lead", "phones": [{"number": "ext. 12"}]}, "phones[0].number"),
        ({"name": "X", "type": "lead", "phones": [{"number": "415 555 0100 \u260e"}]}, "phones[0].number"),
        ({"name": "X", "type": "lead", "phones": [{"number": "1" * 21}]}, "phones[0].number"),
        ({"name": "X", "type": "lead", "phones": [{"number": 14155550100}]}, "phones[0].number"),
        (
            {"name": "X", "type": "lead", "phones": [{"number": "+14155550100"}, {"number": "+1"}]},
            "phones[1].number",
        ),
        (
            {"name": "X", "type": "lead", "phones": [{"number": "+14155550100", "label": 7}]},
            "phones[0].label",
        ),
        ({"name": "X", "type": "lead", "email": ["a@b.c"]}, "email"),
        ([{"name": "X"}], "body"),
    ],
)
def test_invalid_contacts_are_rejected_and_nothing_is_written(crm: Crm, body: Any, field: str) -> None:
    before = (crm.count("SELECT count(*) FROM contacts"), crm.count("SELECT count(*) FROM contact_phones"))
    response = crm.client.post("/contacts", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field and response.json()["error"]
    after = (crm.count("SELECT count(*) FROM contacts"), crm.count("SELECT count(*) FROM contact_phones"))
    assert after == before


def test_invalid_json_is_400(crm: Crm) -> None:
    response = crm.client.post(
        "/contacts", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["field"] == "body"


def test_unknown_fields_are_ignored(crm: Crm) -> None:
    contact = crm.contact("Extra Fields", fresh_number(), favourite_color="blue")
    assert "favourite_color" not in contact


def test_short_phone_lookup_uses_the_digits_index(crm: Crm) -> None:
    """An extension-length term is an exact digits match (indexed); longer terms scan, as `contains` must."""
    with sqlite3.connect(crm.db_path) as conn:
        plan = " ".join(
            str(row)
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT contact_id FROM contact_phones WHERE digits = ?", ("14155550100",)
            )
        )
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan


# --- activities ---------------------------------------------------------------------------------------------


def test_activity_create_get_patch_and_list(crm: Crm) -> None:
    contact = crm.contact("Call Target")
    body = {
        "contact_id": contact["id"],
        "kind": "call",
        "subject": "Inbound call",
        "body": "- Note: hi\n",
        "direction": "Inbound",
        "duration_seconds": 65,
        "started_at": "2024-05-01T10:00:00.000Z",
    }
    response = crm.client.post("/activities", json=body)
    assert response.status_code == 201
    activity = response.json()
    assert {k: activity[k] for k in body} == body
    assert activity["disposition"] is None and activity["external_id"] is None
    assert crm.client.get(f"/activities/{activity['id']}").json() == activity
    assert crm.client.get(f"/contacts/{contact['id']}").json()["updated_at"] >= contact["updated_at"]

    patched = crm.client.patch(
        f"/activities/{activity['id']}",
        json={
            "subject": "Changed",
            "body": "new body",
            "duration_seconds": 70,
            "disposition": {"outcome": "Left voicemail"},
        },
    ).json()
    assert (patched["subject"], patched["body"], patched["duration_seconds"]) == ("Changed", "new body", 70)
    assert patched["disposition"] == {"outcome": "Left voicemail"}
    assert patched["direction"] == "Inbound" and patched["updated_at"] >= activity["updated_at"]
    assert crm.client.get(f"/activities/{activity['id']}").json() == patched

    listed = crm.client.get("/activities", params={"contact_id": contact["id"]}).json()["data"]
    assert [a["id"] for a in listed] == [activity["id"]]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"subject": ""}, "subject"),
        ({"subject": 5}, "subject"),
        ({"body": ["x"]}, "body"),
        ({"duration_seconds": "60"}, "duration_seconds"),
        ({"duration_seconds": True}, "duration_seconds"),
        ({"disposition": "done"}, "disposition"),
    ],
)
def test_patch_rejects_wrong_types_and_changes_nothing(crm: Crm, patch: dict[str, Any], field: str) -> None:
    contact = crm.contact("Patch Target")
    activity = crm.client.post(
        "/activities", json={"contact_id": contact["id"], "kind": "call", "subject": "S", "body": "B"}
    ).json()
    response = crm.client.patch(f"/activities/{activity['id']}", json=patch)
    assert response.status_code == 400 and response.json()["field"] == field
    assert crm.client.get(f"/activities/{activity['id']}").json() == activity


def test_patch_or_get_of_a_missing_activity_is_404(crm: Crm) -> None:
    assert crm.client.get("/activities/987654").status_code == 404
    assert crm.client.patch("/activities/987654", json={"subject": "x"}).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"contact_id": None, "kind": "call", "subject": "S"}, "contact_id"),
        ({"contact_id": "1", "kind": "call", "subject": "S"}, "contact_id"),
        ({"contact_id": 987654, "kind": "call", "subject": "S"}, "contact_id"),
        ({"kind": "email", "subject": "S"}, "kind"),
        ({"kind": "call", "subject": ""}, "subject"),
        ({"kind": "call", "subject": "S", "direction": "Sideways"}, "direction"),
        ({"kind": "call", "subject": "S", "duration_seconds": -1}, "duration_seconds"),
        ({"kind": "call", "subject": "S", "started_at": "yesterday"}, "started_at"),
        ({"kind": "call", "subject": "S", "external_id": 12}, "external_id"),
    ],
)
def test_invalid_activities_are_rejected(crm: Crm, body: dict[str, Any], field: str) -> None:
    contact = crm.contact("Activity Validation")
    before = crm.count("SELECT count(*) FROM activities")
    response = crm.client.post("/activities", json={"contact_id": contact["id"], **body})
    assert response.status_code == 400 and response.json()["field"] == field, response.text
    assert crm.count("SELECT count(*) FROM activities") == before


def received(crm: Crm, **filters: str) -> int:
    """How many creates the CRM has received matching `filters` (its admin count, over all processes)."""
    response = crm.admin.get("/api/_received", params=filters)
    assert response.status_code == 200, response.text
    return int(response.json()["count"])


def test_a_create_sent_twice_makes_two_activities_and_is_counted_twice(crm: Crm) -> None:
    """The CRM does not help: an external_id is data, so a second send shows as a second activity."""
    contact = crm.contact("Sent Twice")
    body = {"contact_id": contact["id"], "kind": "call", "subject": "First", "external_id": "call:abc:1"}
    before = received(crm, path="/api/v1/activities", external_id="call:abc:1")
    first = crm.client.post("/activities", json=body)
    again = crm.client.post("/activities", json={**body, "subject": "Second"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["id"] != again.json()["id"]
    assert crm.count("SELECT count(*) FROM activities WHERE external_id = ?", "call:abc:1") == 2
    assert received(crm, path="/api/v1/activities", external_id="call:abc:1") == before + 2
    listed = crm.client.get("/activities", params={"external_id": "call:abc:1"}).json()["data"]
    assert [a["subject"] for a in listed] == ["First", "Second"]


def test_concurrent_creates_with_one_external_id_are_all_kept(crm: Crm) -> None:
    contact = crm.contact("Concurrent")
    body = {"contact_id": contact["id"], "kind": "call", "subject": "Race", "external_id": "call:race:1"}
    barrier = threading.Barrier(20)
    results: list[tuple[int, int]] = []
    lock = threading.Lock()

    def create() -> None:
        with httpx.Client(base_url=f"{crm.base_url}/api/v1", headers=basic(SEED_KEY), timeout=30) as client:
            barrier.wait()
            response = client.post("/activities", json=body)
        with lock:
            results.append((response.status_code, response.json()["id"]))

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(status for status, _ in results) == [201] * 20
    assert len({activity_id for _, activity_id in results}) == 20
    assert crm.count("SELECT count(*) FROM activities WHERE contact_id = ?", contact["id"]) == 20
    assert received(crm, external_id="call:race:1") == 20


def test_every_create_is_counted_with_its_account_faulted_and_refused_ones_too(crm: Crm) -> None:
    me = crm.client.get("/me").json()
    number = fresh_number()
    phone_digits = number.lstrip("+")
    crm.admin.post(
        "/api/_faults", json={"status": 503, "times": 1, "method": "POST", "path_prefix": "/api/v1/contacts"}
    )
    assert (
        crm.client.post(
            "/contacts", json={"name": "A", "type": "contact", "phones": [{"number": number}]}
        ).status_code
        == 503
    )
    crm.admin.post(
        "/api/_faults",
        json={
            "status": 500,
            "times": 1,
            "method": "POST",
            "path_prefix": "/api/v1/contacts",
            "when": "after",
        },
    )
    assert (
        crm.client.post(
            "/contacts", json={"name": "A", "type": "contact", "phones": [{"number": number}]}
        ).status_code
        == 500
    )
    assert (
        crm.client.post(
            "/contacts", json={"name": "", "type": "contact", "phones": [{"number": number}]}
        ).status_code
        == 400
    )
    assert (
        crm.raw.post(
            "/api/v1/contacts", json={"name": "A", "type": "contact", "phones": [{"number": number}]}
        ).status_code
        == 401
    )
    assert received(crm, phone=phone_digits) == 4
    assert received(crm, phone=phone_digits, account=str(me["id"])) == 3
    assert received(crm, phone=phone_digits, method="POST", path="/api/v1/contacts") == 4
    assert crm.count("SELECT count(*) FROM contact_phones WHERE digits = ?", phone_digits) == 1
    assert crm.raw.get("/api/_received").status_code == 401
    assert crm.admin.get("/api/_received", params={"account": "x"}).status_code == 400


# --- one API key, one account -------------------------------------------------------------------------------


def new_key(crm: Crm) -> str:
    minted = crm.admin.post("/api/v1/api-keys", json={"name": "Other Account"})
    assert minted.status_code == 201, minted.text
    return str(minted.json()["apiKey"])


def test_another_key_can_neither_read_nor_change_an_accounts_records(crm: Crm) -> None:
    number = fresh_number()
    contact = crm.contact("Private Person", number)
    activity = crm.client.post(
        "/activities",
        json={
            "contact_id": contact["id"],
            "kind": "call",
            "subject": "Mine",
            "external_id": "call:private:1",
        },
    ).json()
    with httpx.Client(base_url=f"{crm.base_url}/api/v1", headers=basic(new_key(crm)), timeout=10) as other:
        assert other.get("/contacts", params={"phone": number}).json() == {"data": []}
        assert other.get("/contacts", params={"name": "Private Person"}).json() == {"data": []}
        assert contact["id"] not in {c["id"] for c in other.get("/contacts").json()["data"]}
        assert other.get(f"/contacts/{contact['id']}").status_code == 404
        assert other.get(f"/activities/{activity['id']}").status_code == 404
        assert other.get("/activities", params={"contact_id": contact["id"]}).json() == {"data": []}
        assert other.get("/activities", params={"external_id": "call:private:1"}).json() == {"data": []}
        assert other.patch(f"/activities/{activity['id']}", json={"subject": "Theirs"}).status_code == 404
        on_theirs = other.post(
            "/activities", json={"contact_id": contact["id"], "kind": "call", "subject": "X"}
        )
        assert on_theirs.status_code == 400 and on_theirs.json()["field"] == "contact_id"
        # the other account's own records live beside the first account's, with the same number
        theirs = other.post(
            "/contacts", json={"name": "Their Person", "type": "lead", "phones": [{"number": number}]}
        )
        assert theirs.status_code == 201
        assert [c["name"] for c in other.get("/contacts", params={"phone": number}).json()["data"]] == [
            "Their Person"
        ]
    assert crm.client.get(f"/activities/{activity['id']}").json()["subject"] == "Mine"
    assert [c["name"] for c in crm.client.get("/contacts", params={"phone": number}).json()["data"]] == [
        "Private Person"
    ]
    assert crm.client.get(f"/contacts/{theirs.json()['id']}").status_code == 404


# --- fault injection ----------------------------------------------------------------------------------------


def test_429_fault_is_answered_exactly_times_then_requests_succeed(crm: Crm) -> None:
    number = fresh_number()
    crm.contact("Fault Target", number)
    rule = crm.admin.post(
        "/api/_faults",
        json={
            "status": 429,
            "retry_after": 7,
            "times": 2,
            "method": "GET",
            "path_prefix": "/api/v1/contacts",
        },
    )
    assert rule.status_code == 201
    assert crm.client.get("/me").status_code == 200  # other paths are not affected
    assert crm.client.post("/contacts", json={"name": "POST passes", "type": "lead"}).status_code == 201
    for _ in range(2):
        response = crm.client.get("/contacts", params={"phone": number})
        assert response.status_code == 429
        assert response.headers["retry-after"] == "7" and response.json() == {"error": "injected"}
    assert len(crm.client.get("/contacts", params={"phone": number}).json()["data"]) == 1


def test_fault_without_auth_still_fires_and_does_no_work(crm: Crm) -> None:
    crm.admin.post("/api/_faults", json={"status": 500, "method": "POST", "path_prefix": "/api/v1/contacts"})
    before = crm.count("SELECT count(*) FROM contacts")
    response = crm.client.post("/contacts", json={"name": "Never written", "type": "contact"})
    assert response.status_code == 500 and "retry-after" not in response.headers
    assert crm.count("SELECT count(*) FROM contacts") == before


def test_concurrent_requests_consume_a_fault_exactly_times(crm: Crm) -> None:
    crm.admin.post("/api/_faults", json={"status": 503, "times": 5, "path_prefix": "/api/v1/me"})
    statuses: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        with httpx.Client(base_url=f"{crm.base_url}/api/v1", headers=basic(SEED_KEY), timeout=30) as client:
            status = client.get("/me").status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200] * 15 + [503] * 5


def test_delay_fault_does_the_work_after_the_caller_gave_up(crm: Crm) -> None:
    contact = crm.contact("Slow CRM")
    crm.admin.post(
        "/api/_faults", json={"delay_seconds": 1.0, "method": "POST", "path_prefix": "/api/v1/activities"}
    )
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        crm.client.post(
            "/activities", json={"contact_id": contact["id"], "kind": "call", "subject": "Late"}, timeout=0.3
        )
    assert time.monotonic() - started < 0.9
    deadline = time.monotonic() + 5
    while crm.count("SELECT count(*) FROM activities WHERE contact_id = ?", contact["id"]) == 0:
        assert time.monotonic() < deadline, "the delayed request never did its work"
        time.sleep(0.05)
    listed = crm.client.get("/activities", params={"contact_id": contact["id"]}).json()["data"]
    assert [a["subject"] for a in listed] == ["Late"]


def test_fault_after_the_work_writes_then_answers_the_status(crm: Crm) -> None:
    crm.admin.post(
        "/api/_faults",
        json={"status": 502, "method": "POST", "path_prefix": "/api/v1/contacts", "when": "after"},
    )
    before = crm.count("SELECT count(*) FROM contacts")
    response = crm.client.post("/contacts", json={"name": "Written anyway", "type": "contact"})
    assert response.status_code == 502
    assert crm.count("SELECT count(*) FROM contacts") == before + 1
    assert crm.count("SELECT count(*) FROM contacts WHERE name = ?", "Written anyway") == 1
    assert crm.admin.post("/api/_faults", json={"status": 500, "when": "later"}).status_code == 400


def test_a_test_crm_database_from_before_after_faults_gets_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old-testcrm.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE faults (id INTEGER PRIMARY KEY AUTOINCREMENT, status INTEGER, retry_after FLOAT, "
            "delay_seconds FLOAT, remaining INTEGER NOT NULL, method VARCHAR(10), path_prefix VARCHAR(200), "
            "created_at VARCHAR(40) NOT NULL)"
        )
    app = create_testcrm_app(f"sqlite+aiosqlite:///{path}", seed_api_key=SEED_KEY, admin_token=ADMIN_TOKEN)
    with serve_asgi(app) as base_url:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        rule = {"status": 503, "path_prefix": "/api/v1/me", "when": "after"}
        assert httpx.post(f"{base_url}/api/_faults", json=rule, headers=admin).status_code in (200, 201)
        assert httpx.get(f"{base_url}/api/v1/me", headers=basic(SEED_KEY)).status_code == 503
    with sqlite3.connect(path) as conn:
        assert "after_work" in {row[1] for row in conn.execute("PRAGMA table_info(faults)")}


def test_fault_rules_are_validated_and_cleared(crm: Crm) -> None:
    assert crm.admin.post("/api/_faults", json={"times": 2}).status_code == 400
    assert crm.admin.post("/api/_faults", json={"status": 200}).status_code == 400
    assert crm.admin.post("/api/_faults", json={"status": 500, "times": 0}).status_code == 400
    crm.admin.post("/api/_faults", json={"status": 500, "times": 3})
    assert crm.admin.delete("/api/_faults").json() == {"deleted": 1}
    assert crm.client.get("/me").status_code == 200


def test_stats_count_requests_per_route_template(crm: Crm) -> None:
    before = crm.admin.get("/api/_stats").json()["requests"].get("GET /api/v1/contacts/{contact_id:int}", 0)
    crm.client.get("/contacts/1")
    crm.client.get("/contacts/2")
    after = crm.admin.get("/api/_stats").json()["requests"]["GET /api/v1/contacts/{contact_id:int}"]
    assert after == before + 2


# --- HTML ---------------------------------------------------------------------------------------------------


def test_html_pages_show_contacts_and_activities_escaped(crm: Crm) -> None:
    number = fresh_number()
    contact = crm.contact("<script>alert(1)</script> & Co", number)
    crm.client.post(
        "/activities",
        json={
            "contact_id": contact["id"],
            "kind": "call",
            "subject": "Call <b>x</b>",
            "body": '- Note: 1 < 2 & "quotes"\n- Result: Answered\n',
            "direction": "Outbound",
            "duration_seconds": 125,
        },
    )
    page = crm.raw.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for html in (page.text, crm.raw.get(f"/contacts/{contact['id']}").text):
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in html
        assert number in html
        assert "Call &lt;b&gt;x&lt;/b&gt;" in html
        assert "<pre>- Note: 1 &lt; 2 &amp; &quot;quotes&quot;\n- Result: Answered\n</pre>" in html
        assert "Outbound" in html and "2m 05s" in html
    assert crm.raw.get("/contacts/987654").status_code == 404


# --- several server processes on one database file ----------------------------------------------------------


def test_two_app_instances_on_one_file_share_records_faults_and_counts(tmp_path: Path) -> None:
    """Each instance has its own engine and pool, as each worker process would."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"
    first_app = create_testcrm_app(db_url, seed_api_key=SEED_KEY, admin_token=ADMIN_TOKEN)
    second_app = create_testcrm_app(db_url, seed_api_key=SEED_KEY, admin_token=ADMIN_TOKEN)
    with serve_asgi(first_app, lifespan="on") as first, serve_asgi(second_app, lifespan="on") as second:
        bases = [first, second]
        with httpx.Client(base_url=f"{first}/api/v1", headers=basic(SEED_KEY), timeout=30) as client:
            contact = client.post("/contacts", json={"name": "Shared", "type": "contact"}).json()
        with httpx.Client(base_url=second, headers=ADMIN) as admin:
            rule = admin.post("/api/_faults", json={"status": 429, "times": 3, "method": "POST"})
            assert rule.status_code == 201
        body = {"contact_id": contact["id"], "kind": "message", "subject": "S", "external_id": "msg:shared:1"}
        statuses: list[int] = []
        lock = threading.Lock()

        def create(index: int) -> None:
            base = bases[index % 2]
            with httpx.Client(base_url=f"{base}/api/v1", headers=basic(SEED_KEY), timeout=30) as client:
                status = client.post("/activities", json=body).status_code
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=create, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(statuses) == [201] * 17 + [429] * 3
        with sqlite3.connect(tmp_path / "shared.sqlite3") as conn:
            assert conn.execute("SELECT count(*) FROM activities").fetchone()[0] == 17
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with httpx.Client(base_url=first, headers=ADMIN) as admin:
            assert admin.get("/api/_received", params={"external_id": "msg:shared:1"}).json() == {"count": 20}


# --- ids too large for any row, and the fault list --------------------------------------------------------


@pytest.mark.parametrize("huge", [2**31, 2**63 - 1, 2**63, 10**30])
def test_ids_too_large_for_a_row_are_not_found_not_a_server_error(crm: Crm, huge: int) -> None:
    assert crm.client.get(f"/contacts/{huge}").status_code == 404
    assert crm.client.get(f"/activities/{huge}").status_code == 404
    assert crm.client.patch(f"/activities/{huge}", json={"subject": "x"}).status_code == 404
    assert crm.raw.get(f"/contacts/{huge}").status_code == 404
    listed = crm.client.get("/activities", params={"contact_id": str(huge)})
    assert listed.status_code == 400 and listed.json()["field"] == "contact_id"
    created = crm.client.post("/activities", json={"contact_id": huge, "kind": "call", "subject": "S"})
    assert created.status_code == 400 and created.json()["field"] == "contact_id"
    contact = crm.contact("Big Duration")
    too_long = {"contact_id": contact["id"], "kind": "call", "subject": "S", "duration_seconds": huge}
    rejected = crm.client.post("/activities", json=too_long)
    assert rejected.status_code == 400 and rejected.json()["field"] == "duration_seconds"
    assert crm.admin.post("/api/_faults", json={"status": 500, "times": huge}).status_code == 400


def test_the_fault_list_answers_the_rules(crm: Crm) -> None:
    crm.admin.post("/api/_faults", json={"status": 503, "times": 2, "path_prefix": "/api/v1/nowhere"})
    listed = crm.admin.get("/api/_faults")
    assert listed.status_code == 200, listed.text
    [rule] = listed.json()["data"]
    assert (rule["status"], rule["remaining"], rule["path_prefix"]) == (503, 2, "/api/v1/nowhere")
    assert crm.raw.get("/api/_faults").status_code == 401
