"""Conformance targets of the built-in connectors: the embedded test CRM and Pipedrive (its fake)."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import httpx

from tests.conftest import crm_admin_headers
from tests.connectors.conformance.target import (
    ConformanceTarget,
    CrmRecord,
    FakeCrmTarget,
    Operation,
    When,
    api_key_login,
    authorize_redirect,
    digits,
    oauth_callback_login,
    same_number_loosely,
)
from tests.connectors.pipedrive.fake_pipedrive import FakePipedrive

# ------------------------------------------------------------------------------------------------------------
# The embedded test CRM
# ------------------------------------------------------------------------------------------------------------

#: operation -> (method, path prefix inside the test CRM app)
_TESTCRM_REQUESTS: dict[Operation, tuple[str, str]] = {
    "find_contact": ("GET", "/api/v1/contacts"),
    "create_contact": ("POST", "/api/v1/contacts"),
    "create_call_log": ("POST", "/api/v1/activities"),
    "get_call_log": ("GET", "/api/v1/activities/"),
    "update_call_log": ("PATCH", "/api/v1/activities/"),
    "create_message_log": ("POST", "/api/v1/activities"),
    "update_message_log": ("PATCH", "/api/v1/activities/"),
}


class TestCrmTarget(ConformanceTarget):
    """The server's own embedded test CRM: its fake is the server itself (fault injection by its admin API)."""

    __test__ = False
    platform: ClassVar[str] = "testcrm"
    backends: ClassVar[tuple[str, ...]] = ("sqlite", "postgres")

    def __init__(self) -> None:
        self._crm: httpx.Client | None = None
        self._api_key = ""

    def start(self) -> None:
        return None

    def stop(self) -> None:
        if self._crm is not None:
            self._crm.close()
            self._crm = None

    def server_env(self) -> dict[str, str]:
        return {}  # start_server points TESTCRM_BASE_URL at the server's own /testcrm

    def server_settings(self) -> dict[str, object]:
        return {}

    def bind(self, server_url: str) -> None:
        self.stop()
        self._crm = httpx.Client(base_url=f"{server_url}/testcrm", timeout=15)

    @property
    def crm(self) -> httpx.Client:
        assert self._crm is not None, "bind() was not called"
        return self._crm

    def reset(self) -> None:
        self.clear_faults()

    def clear_faults(self) -> None:
        response = self.crm.delete("/api/_faults", headers=crm_admin_headers())
        assert response.status_code == 200, response.text

    async def login(self, http: httpx.AsyncClient) -> str:
        minted = self.crm.post(
            "/api/v1/api-keys", json={"name": f"Agent {uuid.uuid4().hex[:6]}"}, headers=crm_admin_headers()
        )
        assert minted.status_code in (200, 201), minted.text
        self._api_key = minted.json()["apiKey"]
        return await api_key_login(http, self.platform, self._api_key, hostname="testcrm.local")

    @property
    def _auth(self) -> tuple[str, str]:
        assert self._api_key, "login() first"
        return (self._api_key, "")

    def seed_contact(self, name: str, stored_phone: str, contact_type: str = "") -> str:
        response = self.crm.post(
            "/api/v1/contacts",
            json={"name": name, "type": contact_type or "contact", "phones": [{"number": stored_phone}]},
            auth=self._auth,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def contacts_with_number(self, e164: str) -> list[CrmRecord]:
        response = self.crm.get("/api/v1/contacts", params={"phone": digits(e164)[-10:]}, auth=self._auth)
        assert response.status_code == 200, response.text
        return [
            CrmRecord(str(c["id"]), kind=str(c.get("type") or ""), text=str(c.get("name", "")), raw=c)
            for c in response.json()["data"]
            if any(same_number_loosely(str(p.get("number", "")), e164) for p in c.get("phones") or [])
        ]

    def logs_for(self, contact_id: str, contact_type: str = "") -> list[CrmRecord]:
        response = self.crm.get("/api/v1/activities", params={"contact_id": contact_id}, auth=self._auth)
        assert response.status_code == 200, response.text
        found = sorted(response.json()["data"], key=lambda a: int(a["id"]))
        return [
            CrmRecord(
                str(a["id"]),
                kind=str(a.get("kind") or ""),
                text=f"{a.get('subject') or ''}\n{a.get('body') or ''}",
                raw=a,
            )
            for a in found
        ]

    def inject(
        self,
        operation: Operation,
        status: int | None = None,
        *,
        delay: float | None = None,
        retry_after: float | None = None,
        when: When = "before",
        times: int = 1,
    ) -> None:
        method, prefix = _TESTCRM_REQUESTS[operation]
        rule: dict[str, Any] = {"method": method, "path_prefix": prefix, "times": times, "when": when}
        if status is not None:
            rule["status"] = status
        if delay is not None:
            rule["delay_seconds"] = delay
        if retry_after is not None:
            rule["retry_after"] = retry_after
        response = self.crm.post("/api/_faults", json=rule, headers=crm_admin_headers())
        assert response.status_code in (200, 201), response.text


# ------------------------------------------------------------------------------------------------------------
# Pipedrive
# ------------------------------------------------------------------------------------------------------------

_PIPEDRIVE_REQUESTS: dict[Operation, tuple[str, str]] = {
    "find_contact": ("GET", "/api/v2/persons/search"),
    "create_contact": ("POST", "/api/v2/persons"),
    "create_call_log": ("POST", "/api/v2/activities"),
    "get_call_log": ("GET", "/api/v2/activities/"),
    "update_call_log": ("PATCH", "/api/v2/activities/"),
    "create_message_log": ("POST", "/api/v2/activities"),
    "update_message_log": ("PATCH", "/api/v2/activities/"),
}


class PipedriveTarget(FakeCrmTarget):
    """Pipedrive (OAuth) against FakePipedrive."""

    __test__ = False
    platform: ClassVar[str] = "pipedrive"
    #: the reference (`src/connectors/pipedrive/index.ts`): a lookup is one person search plus the person's open
    #: deals and leads (lines 192-235); a call log reads the person's organisation and posts the activity, the
    #: activity types cached per account (lines 402-471)
    reference_calls: ClassVar[dict[str, int]] = {
        "lookup_hit": 3,
        "lookup_miss": 1,
        "create_contact": 1,
        "create_call_log": 2,
    }
    fake: FakePipedrive
    fault_routes: ClassVar[dict[Operation, list[tuple[str, str]]]] = {
        op: [route] for op, route in _PIPEDRIVE_REQUESTS.items()
    }

    def __init__(self) -> None:
        super().__init__(FakePipedrive())

    def server_env(self) -> dict[str, str]:
        return self.fake.env()

    async def login(self, http: httpx.AsyncClient) -> str:
        env = self.fake.env()
        redirect = await authorize_redirect(
            env["PIPEDRIVE_AUTHORIZE_URL"],
            {
                "client_id": env["PIPEDRIVE_CLIENT_ID"],
                "redirect_uri": env["PIPEDRIVE_REDIRECT_URI"],
                "response_type": "code",
                "state": "platform=pipedrive",
            },
        )
        return await oauth_callback_login(http, redirect)

    def seed_contact(self, name: str, stored_phone: str, contact_type: str = "") -> str:
        return str(self.fake.add_person(name, phones=[stored_phone])["id"])

    def contacts_with_number(self, e164: str) -> list[CrmRecord]:
        return [
            CrmRecord(str(p["id"]), text=str(p.get("name", "")), raw=p)
            for p in self.fake.persons.values()
            if any(same_number_loosely(str(point.get("value", "")), e164) for point in p.get("phones") or [])
        ]

    def logs_for(self, contact_id: str, contact_type: str = "") -> list[CrmRecord]:
        found = [
            a
            for a in self.fake.activities.values()
            if str(a.get("person_id")) == contact_id
            or any(str(p.get("person_id")) == contact_id for p in a.get("participants") or [])
        ]
        found.sort(key=lambda a: int(a["id"]))
        return [
            CrmRecord(
                str(a["id"]),
                kind=str(a.get("type") or ""),
                text="\n".join(str(a.get(k) or "") for k in ("subject", "note", "public_description")),
                raw=a,
            )
            for a in found
            if not a.get("is_deleted")
        ]
