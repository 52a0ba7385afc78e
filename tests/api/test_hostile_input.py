"""Hostile input in every field of every route: a clear 400 naming the field, the same on both databases.

NUL characters and over-long ids used to reach PostgreSQL (which refuses them) and come back as
"Database operation failed" there while SQLite stored them; settings could be nested until reading them back
failed; empty and comma-carrying session ids could be logged but never looked up, or matched everyone's.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import call_log_body, message_log_body, new_phone

NUL = "a\x00b"
LONG = "9" * 300


def set_path(body: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A copy of `body` with the dotted `path` (digits index lists) set to `value`."""
    result = copy.deepcopy(body)
    node: Any = result
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return result


BODY_FIELDS: dict[tuple[str, str], list[str]] = {
    ("POST", "/apiKeyLogin"): [
        "platform",
        "apiKey",
        "hostname",
        "proxyId",
        "additionalInfo.k",
        "rcAccountId",
    ],
    ("POST", "/contact"): ["phoneNumber", "newContactName", "newContactType", "additionalSubmission.k"],
    ("POST", "/callLog"): [
        "logInfo.sessionId",
        "logInfo.id",
        "logInfo.telephonySessionId",
        "logInfo.direction",
        "logInfo.startTime",
        "logInfo.duration",
        "logInfo.result",
        "logInfo.from.phoneNumber",
        "logInfo.from.name",
        "logInfo.to.phoneNumber",
        "contactId",
        "contactName",
        "contactType",
        "note",
        "additionalSubmission.k",
        "extensionNumber",
        "hashedExtensionId",
    ],
    ("PATCH", "/callLog"): [
        "sessionId",
        "note",
        "subject",
        "extensionNumber",
        "hashedExtensionId",
        "duration",
    ],
    ("PUT", "/callDisposition"): ["sessionId", "dispositions.k", "extensionNumber", "hashedExtensionId"],
    ("POST", "/messageLog"): [
        "logInfo.conversationId",
        "logInfo.conversationLogId",
        "logInfo.messages.0.id",
        "logInfo.messages.0.subject",
        "logInfo.messages.0.from.phoneNumber",
        "logInfo.correspondents.0.phoneNumber",
        "contactId",
        "contactName",
        "additionalSubmission.k",
    ],
    ("POST", "/user/settings"): ["userSettings.k.value", "settingKeysToRemove.0"],
}
# Stored in a database column: longer than the column is a 400 naming the field.
STORED_FIELDS = {
    "rcAccountId",
    "phoneNumber",
    "logInfo.sessionId",
    "logInfo.id",
    "logInfo.telephonySessionId",
    "contactId",
    "extensionNumber",
    "hashedExtensionId",
    "sessionId",
    "logInfo.conversationId",
    "logInfo.conversationLogId",
    "logInfo.messages.0.id",
    "settingKeysToRemove.0",
}


def base_body(
    method: str, path: str, api_key: str, contact_id: str, phone: str, session: str
) -> dict[str, Any]:
    if path == "/apiKeyLogin":
        return {
            "platform": "testcrm",
            "apiKey": api_key,
            "hostname": "crm.example.com",
            "proxyId": "p",
            "additionalInfo": {"k": "v"},
            "rcAccountId": "acct",
        }
    if path == "/contact":
        return {
            "phoneNumber": phone,
            "newContactName": "Ada",
            "newContactType": "contact",
            "additionalSubmission": {"k": "v"},
        }
    if (method, path) == ("POST", "/callLog"):
        body = call_log_body(session, contact_id, phone, additionalSubmission={"k": "v"})
        return {**body, "extensionNumber": "101", "hashedExtensionId": "h"}
    if (method, path) == ("PATCH", "/callLog"):
        return {"sessionId": session, "note": "n", "subject": "s", "extensionNumber": "101",
                "hashedExtensionId": "h", "duration": 5}  # fmt: skip
    if path == "/callDisposition":
        return {
            "sessionId": session,
            "dispositions": {"k": "v"},
            "extensionNumber": "101",
            "hashedExtensionId": "h",
        }
    if path == "/messageLog":
        return message_log_body(contact_id, phone)
    return {"userSettings": {"k": {"value": "v"}}, "settingKeysToRemove": ["old"]}


@pytest.fixture
def contact(client: httpx.Client, jwt: str) -> tuple[str, str]:
    phone = new_phone()
    response = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Ada", "newContactType": "contact"},
        headers={"Authorization": f"Bearer {jwt}"},
    )
    assert response.status_code == 200, response.text
    return response.json()["contact"]["id"], phone


def send(client: httpx.Client, method: str, path: str, jwt: str, body: dict[str, Any]) -> httpx.Response:
    return client.request(method, path, json=body, headers={"Authorization": f"Bearer {jwt}"})


@pytest.mark.parametrize(("route", "field"), [(r, f) for r, fields in BODY_FIELDS.items() for f in fields])
def test_every_body_field_refuses_nul_and_survives_hostile_values(
    client: httpx.Client,
    jwt: str,
    crm_api_key: str,
    contact: tuple[str, str],
    route: tuple[str, str],
    field: str,
) -> None:
    method, path = route
    contact_id, phone = contact

    def body_with(value: object) -> dict[str, Any]:
        session = f"s-{uuid.uuid4().hex}"
        return set_path(base_body(method, path, crm_api_key, contact_id, phone, session), field, value)

    refused = send(client, method, path, jwt, body_with(NUL))
    assert refused.status_code == 400, refused.text
    assert (
        field.split(".")[-1].replace("0", "") in refused.json()["error"] or field in refused.json()["error"]
    )
    assert "NUL" in refused.json()["error"]

    too_long = send(client, method, path, jwt, body_with(LONG))
    assert too_long.status_code in (200, 400), too_long.text
    assert "Database operation failed" not in too_long.text
    if field in STORED_FIELDS:
        assert too_long.status_code == 400
        assert field.split(".")[-1] in too_long.json()["error"]

    for hostile in (2**64, -(2**70), {"deep": [[[[{"x": 1}]]]]}, [1, "two", None], True, "", " ", ",", 1e300):
        response = send(client, method, path, jwt, body_with(hostile))
        assert response.status_code in (200, 400), (hostile, response.text)
        assert "Database operation failed" not in response.text


QUERY_ROUTES: dict[str, list[str]] = {
    "/contact": ["phoneNumber", "overridingFormat", "isExtension"],
    "/callLog": ["sessionIds", "extensionNumber", "hashedExtensionId"],
    "/custom/contact/search": ["name"],
    "/user/settings": ["rcAccountId"],
    "/user/preloadSettings": ["rcAccountId"],
    "/userInfoHash": ["extensionId", "accountId"],
    "/implementedInterfaces": ["platform"],
    "/crmManifest": ["platformName"],
    "/oauth-callback": ["hostname", "callbackUri", "rcAccountId"],
}


@pytest.mark.parametrize(("path", "name"), [(p, n) for p, names in QUERY_ROUTES.items() for n in names])
def test_every_query_parameter_refuses_nul_and_survives_long_values(
    client: httpx.Client, jwt: str, path: str, name: str
) -> None:
    auth = {"Authorization": f"Bearer {jwt}"}
    defaults = {"phoneNumber": new_phone(), "extensionId": "1", "accountId": "2", "platform": "testcrm"}
    refused = client.get(path, params={**defaults, name: NUL}, headers=auth)
    assert refused.status_code == 400
    assert name in refused.json()["error"] and "NUL" in refused.json()["error"]
    for hostile in ("x" * 5000, LONG, ",,,", "%00", "<script>"):
        response = client.get(path, params={**defaults, name: hostile}, headers=auth)
        assert response.status_code < 500, response.text
        assert "Database operation failed" not in response.text


def test_empty_session_ids_are_refused_and_never_match(
    client: httpx.Client, jwt: str, contact: tuple[str, str]
) -> None:
    contact_id, phone = contact
    auth = {"Authorization": f"Bearer {jwt}"}
    for session in ("", "  "):
        created = client.post("/callLog", json=call_log_body(session, contact_id, phone), headers=auth)
        assert created.status_code == 400 and "logInfo.sessionId" in created.json()["error"]
        patched = client.patch("/callLog", json={"sessionId": session, "note": "n"}, headers=auth)
        assert patched.status_code == 400 and "sessionId" in patched.json()["error"]
        disposed = client.put(
            "/callDisposition", json={"sessionId": session, "dispositions": {}}, headers=auth
        )
        assert disposed.status_code == 400 and "sessionId" in disposed.json()["error"]
    real = f"s-{uuid.uuid4().hex}"
    assert client.post("/callLog", json=call_log_body(real, contact_id, phone), headers=auth).json()[
        "successful"
    ]
    lookup = client.get("/callLog", params={"sessionIds": f",,{real},,"}, headers=auth).json()
    assert lookup["logs"] == [{"sessionId": real, "matched": True, "logId": lookup["logs"][0]["logId"]}]
    empty = client.get("/callLog", params={"sessionIds": ",,"}, headers=auth).json()
    assert not any(log.get("matched") for log in empty.get("logs", []))


def test_a_session_id_with_a_comma_is_refused(
    client: httpx.Client, jwt: str, contact: tuple[str, str]
) -> None:
    contact_id, phone = contact
    auth = {"Authorization": f"Bearer {jwt}"}
    created = client.post("/callLog", json=call_log_body("a,b", contact_id, phone), headers=auth)
    assert created.status_code == 400
    assert "logInfo.sessionId" in created.json()["error"] and "comma" in created.json()["error"]


def nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = {"n": value}
    return value


def test_user_settings_are_bounded_in_depth_keys_and_size(client: httpx.Client, jwt: str) -> None:
    auth = {"Authorization": f"Bearer {jwt}"}
    too_deep = client.post("/user/settings", json={"userSettings": {"k": nested(300)}}, headers=auth)
    assert too_deep.status_code == 400
    assert "userSettings" in too_deep.json()["error"] and "nested" in too_deep.json()["error"]
    nine_deep = client.post("/user/settings", json={"userSettings": {"k": nested(9)}}, headers=auth)
    assert nine_deep.status_code == 400 and "userSettings" in nine_deep.json()["error"]
    many = {f"key{i}": {"value": i} for i in range(301)}
    assert client.post("/user/settings", json={"userSettings": many}, headers=auth).status_code == 400
    big = {"k": {"value": "x" * 70_000}}
    assert client.post("/user/settings", json={"userSettings": big}, headers=auth).status_code == 400
    readable = client.get("/user/settings", headers=auth)
    assert readable.status_code == 200, readable.text

    ok = client.post("/user/settings", json={"userSettings": {"k": nested(5)}}, headers=auth)
    assert ok.status_code == 200, ok.text
    # many requests within the bound each cannot add up to an unbounded store
    for batch in range(2):
        chunk = {f"b{batch}-{i}": {"value": i} for i in range(200)}
        last = client.post("/user/settings", json={"userSettings": chunk}, headers=auth)
    assert last.status_code == 400 and "userSettings" in last.json()["error"]
    assert client.get("/user/settings", headers=auth).status_code == 200


@pytest.mark.parametrize("header", ["rc-account-id", "rc-extension-id"])
def test_login_refuses_identity_headers_longer_than_their_column(
    client: httpx.Client, crm_api_key: str, header: str
) -> None:
    response = client.post(
        "/apiKeyLogin", json={"platform": "testcrm", "apiKey": crm_api_key}, headers={header: "h" * 300}
    )
    assert response.status_code == 400 and header in response.json()["error"]
