"""Outbound CRM calls under faults, through the real server and the embedded test CRM (SQLite and PostgreSQL).

Each test asserts what the CRM finally holds (exact counts): retries never duplicate a write, a create whose
answer was lost is adopted rather than repeated, and a rate-limited account is left alone.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from appconnect.outbound.limits import SHARED_CHECK_SECONDS
from tests.conftest import CrmView, LiveServer, new_phone, start_server


@pytest.fixture
def faults(crm: CrmView) -> Iterator[CrmView]:
    crm.clear_faults()
    yield crm
    crm.clear_faults()


def auth(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}


def create_contact(client: httpx.Client, jwt: str, phone: str, name: str = "Ada Lovelace") -> dict[str, Any]:
    response = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": name, "newContactType": "contact"},
        headers=auth(jwt),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def lookup(client: httpx.Client, jwt: str, phone: str) -> dict[str, Any]:
    response = client.get(
        "/contact", params={"phoneNumber": phone, "isForceRefreshAccountData": "true"}, headers=auth(jwt)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def detail_text(body: dict[str, Any]) -> str:
    return str(body["returnMessage"]["details"][0]["items"][0]["text"])


def wait_for_contacts(crm: CrmView, phone: str, count: int) -> list[dict[str, object]]:
    """The slow CRM finishes the write it was still doing after we gave up."""
    deadline = time.monotonic() + 10
    while len(found := crm.contacts_with_phone(phone)) < count:
        assert time.monotonic() < deadline, "the slow CRM never finished the create"
        time.sleep(0.05)
    return found


# --- retries ---------------------------------------------------------------------------------------------------


def test_429_storm_with_short_retry_after_is_waited_out(
    client: httpx.Client, jwt: str, faults: CrmView
) -> None:
    phone = new_phone()
    faults.inject(status=429, retry_after=0.2, times=2, method="POST", path_prefix="/api/v1/contacts")
    created = create_contact(client, jwt, phone)
    assert created["successful"] is True, created
    contacts = faults.contacts_with_phone(phone)
    assert len(contacts) == 1
    assert created["contact"]["id"] == str(contacts[0]["id"])


def test_5xx_burst_on_a_read_is_retried(client: httpx.Client, jwt: str, faults: CrmView) -> None:
    phone = new_phone()
    assert create_contact(client, jwt, phone)["successful"] is True
    faults.inject(status=503, times=2, method="GET", path_prefix="/api/v1/contacts")
    found = lookup(client, jwt, phone)
    assert found["successful"] is True, found
    assert [c["name"] for c in found["contact"] if not c.get("isNewContact")] == ["Ada Lovelace"]


def test_5xx_burst_longer_than_the_retries_is_reported(
    client: httpx.Client, jwt: str, faults: CrmView
) -> None:
    faults.inject(status=503, times=5, method="GET", path_prefix="/api/v1/contacts")
    found = lookup(client, jwt, new_phone())
    assert found["successful"] is False
    assert found["returnMessage"]["message"] == "Error finding contact"
    assert detail_text(found) == "testcrm is having problems (HTTP 503). Please try again later."


def test_a_write_answered_503_is_not_sent_again(client: httpx.Client, jwt: str, faults: CrmView) -> None:
    """Were the 503 retried, the second try would create the contact (the fault answers once)."""
    phone = new_phone()
    faults.inject(status=503, times=1, method="POST", path_prefix="/api/v1/contacts")
    failed = create_contact(client, jwt, phone)
    assert failed["successful"] is False
    assert faults.contacts_with_phone(phone) == []
    retried = create_contact(client, jwt, phone)
    assert retried["successful"] is True
    assert len(faults.contacts_with_phone(phone)) == 1


# --- a create whose answer was lost ------------------------------------------------------------------------


def test_create_answered_after_the_read_timeout_then_retried_gives_one_contact(
    client: httpx.Client, jwt: str, faults: CrmView
) -> None:
    phone = new_phone()
    faults.inject(delay_seconds=3.0, times=1, method="POST", path_prefix="/api/v1/contacts")
    slow = create_contact(client, jwt, phone)
    assert slow["successful"] is False
    assert slow["returnMessage"]["message"] == "Error creating contact"
    assert detail_text(slow) == "testcrm did not answer in time. Please try again."
    [made] = wait_for_contacts(faults, phone, 1)

    retried = create_contact(client, jwt, phone)
    assert retried["successful"] is True, retried
    assert retried["contact"]["id"] == str(made["id"])
    again = create_contact(client, jwt, phone)
    assert again["contact"]["id"] == str(made["id"])
    assert len(faults.contacts_with_phone(phone)) == 1


def test_unknown_create_with_another_name_at_the_crm_creates_the_requested_one(
    client: httpx.Client, jwt: str, faults: CrmView
) -> None:
    """Only a contact with the requested name is adopted: another name on that number is another record."""
    phone = new_phone()
    faults.inject(delay_seconds=3.0, times=1, method="POST", path_prefix="/api/v1/contacts")
    assert create_contact(client, jwt, phone, name="First Name")["successful"] is False
    wait_for_contacts(faults, phone, 1)
    retried = create_contact(client, jwt, phone, name="Second Name")
    assert retried["successful"] is True
    names = sorted(str(c["name"]) for c in faults.contacts_with_phone(phone))
    assert names == ["First Name", "Second Name"]
    assert retried["contact"]["name"] == "Second Name"


def test_concurrent_retries_after_a_lost_answer_give_one_contact(
    client: httpx.Client, jwt: str, faults: CrmView, server: LiveServer
) -> None:
    phone = new_phone()
    faults.inject(delay_seconds=3.0, times=1, method="POST", path_prefix="/api/v1/contacts")
    assert create_contact(client, jwt, phone)["successful"] is False
    wait_for_contacts(faults, phone, 1)

    ids: list[str] = []
    lock = threading.Lock()

    def retry() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as own:
            body = create_contact(own, jwt, phone)
        with lock:
            ids.append(str(body["contact"]["id"]) if body["successful"] else "failed")

    threads = [threading.Thread(target=retry) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    contacts = faults.contacts_with_phone(phone)
    assert len(contacts) == 1
    assert ids == [str(contacts[0]["id"])] * 10


# --- error messages -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "title", "detail"),
    [
        (400, "Error creating contact", "testcrm did not accept the data: injected"),
        (422, "Error creating contact", "testcrm did not accept the data: injected"),
        (404, "Error creating contact", "The record was not found in testcrm; it may have been deleted."),
        (500, "Error creating contact", "testcrm is having problems (HTTP 500). Please try again later."),
        (401, "Authorization error", "Please Logout and then Connect your testcrm account"),
        (403, "Authorization error", "Please Logout and then Connect your testcrm account"),
    ],
)
def test_crm_errors_are_explained(
    client: httpx.Client, jwt: str, faults: CrmView, status: int, title: str, detail: str
) -> None:
    faults.inject(status=status, times=1, method="POST", path_prefix="/api/v1/contacts")
    body = create_contact(client, jwt, new_phone())
    assert body["successful"] is False
    assert body["returnMessage"]["message"] == title
    assert detail in detail_text(body)
    assert "permission" not in detail_text(body)


# --- the per-account rate limiter -------------------------------------------------------------------------------


@contextmanager
def second_server(base: LiveServer, folder: Path, **overrides: Any) -> Iterator[LiveServer]:
    """Another server (a second worker or machine) on `base`'s database, keys and test CRM, own settings."""
    with pytest.MonkeyPatch.context() as env:
        # start_server points TESTCRM_BASE_URL at the new server; the context puts the old value back after
        env.setenv("TESTCRM_BASE_URL", "")
        yield from start_server(
            folder,
            base.settings.database_url,
            key_file=base.settings.key_file,
            testcrm_database_url=base.settings.testcrm_database_url,
            **overrides,
        )


def login(client: httpx.Client, api_key: str, hostname: str) -> str:
    response = client.post(
        "/apiKeyLogin",
        json={"platform": "testcrm", "apiKey": api_key, "hostname": hostname},
        headers={"rc-account-id": f"acct-{uuid.uuid4().hex}"},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["jwtToken"]
    return token


def fault_still_pending(client: httpx.Client, api_key: str) -> bool:
    """The injected GET fault answers the next GET: if it is still there, the server never sent its GET."""
    response = client.get("/testcrm/api/v1/contacts", params={"phone": new_phone()}, auth=(api_key, ""))
    return response.status_code == 500


def test_one_users_burst_is_capped_by_the_account_limit(
    server: LiveServer, client: httpx.Client, crm_api_key: str, faults: CrmView, tmp_path: Path
) -> None:
    """3 calls a minute: the 4th lookup waits briefly, then fails as a rate limit without calling the CRM."""
    with (
        second_server(
            server, tmp_path, crm_rate_limit="testcrm=3/60", crm_rate_limit_max_wait_seconds=0.2
        ) as limited,
        httpx.Client(base_url=limited.base_url, timeout=30) as limited_client,
    ):
        jwt = login(limited_client, crm_api_key, f"limit-{uuid.uuid4().hex[:8]}.local")
        phone = new_phone()
        answers = [lookup(limited_client, jwt, phone) for _ in range(3)]
        assert all(a["successful"] for a in answers)
        faults.inject(status=500, times=1, method="GET", path_prefix="/api/v1/contacts")
        refused = lookup(limited_client, jwt, phone)
        assert refused["successful"] is False
        assert refused["returnMessage"]["message"] == "Rate limit exceeded"
    assert fault_still_pending(client, crm_api_key)


def test_a_429_makes_every_worker_back_off(
    server: LiveServer, client: httpx.Client, crm_api_key: str, faults: CrmView, tmp_path: Path
) -> None:
    """Worker A sees 429 with a long Retry-After; worker B, same account, does not call the CRM meanwhile."""
    hostname = f"shared-{uuid.uuid4().hex[:8]}.local"
    jwt_a = login(client, crm_api_key, hostname)
    with (
        second_server(server, tmp_path) as other,
        httpx.Client(base_url=other.base_url, timeout=30) as client_b,
    ):
        jwt_b = login(client_b, crm_api_key, hostname)
        phone = new_phone()
        faults.inject(status=429, retry_after=60, times=1, method="GET", path_prefix="/api/v1/contacts")
        assert lookup(client, jwt_a, phone)["returnMessage"]["message"] == "Rate limit exceeded"
        faults.inject(status=500, times=1, method="GET", path_prefix="/api/v1/contacts")
        time.sleep(
            SHARED_CHECK_SECONDS
        )  # each server reads the shared back-off of a key at most once a second
        refused = lookup(client_b, jwt_b, phone)
        assert refused["returnMessage"]["message"] == "Rate limit exceeded"
    assert fault_still_pending(client, crm_api_key)


def test_a_429_makes_every_machine_back_off_through_redis(
    server: LiveServer, client: httpx.Client, crm_api_key: str, faults: CrmView, tmp_path: Path
) -> None:
    """Two servers sharing Redis: the back-off one of them learnt holds for the other."""
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.skip("Redis not reachable on 127.0.0.1:6379")
    hostname = f"redis-{uuid.uuid4().hex[:8]}.local"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    redis_url = "redis://127.0.0.1:6379/0"
    with (
        second_server(server, tmp_path / "a", redis_url=redis_url) as first,
        second_server(server, tmp_path / "b", redis_url=redis_url) as second,
        httpx.Client(base_url=first.base_url, timeout=30) as client_a,
        httpx.Client(base_url=second.base_url, timeout=30) as client_b,
    ):
        jwt_a = login(client_a, crm_api_key, hostname)
        jwt_b = login(client_b, crm_api_key, hostname)
        phone = new_phone()
        faults.inject(status=429, retry_after=60, times=1, method="GET", path_prefix="/api/v1/contacts")
        assert lookup(client_a, jwt_a, phone)["returnMessage"]["message"] == "Rate limit exceeded"
        faults.inject(status=500, times=1, method="GET", path_prefix="/api/v1/contacts")
        time.sleep(
            SHARED_CHECK_SECONDS
        )  # each server reads the shared back-off of a key at most once a second
        refused = lookup(client_b, jwt_b, phone)
        assert refused["returnMessage"]["message"] == "Rate limit exceeded"
    assert fault_still_pending(client, crm_api_key)
