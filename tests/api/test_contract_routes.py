"""The smaller contract routes: health, metadata, hashes, hostname, search, dispositions, settings."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import CrmView, LiveServer, call_log_body, new_phone


def auth(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}


def test_is_alive_is_plain_ok(client: httpx.Client) -> None:
    response = client.get("/isAlive")
    assert response.text == "OK" and response.headers["content-type"].startswith("text/plain")


def test_manifest_for_unknown_platform_is_refused(client: httpx.Client) -> None:
    response = client.get("/crmManifest", params={"platformName": "nosuchcrm"})
    assert response.status_code == 400 and response.text == "Platform not found"
    everything = client.get("/crmManifest").json()
    assert set(everything["platforms"]) == {
        "testcrm",
        "pipedrive",
        "clio",
        "insightly",
        "redtail",
        "vinsolutions",
        "bullhorn",
        "netsuite",
        "googleSheets",
    }


def test_version_and_release_notes(client: httpx.Client) -> None:
    version = client.get("/serverVersionInfo").json()["version"]
    assert version and version != "unknown"
    assert version in client.get("/releaseNotes").json()


def test_user_info_hash_uses_the_server_hash_key(server: LiveServer, client: httpx.Client) -> None:
    key = json.loads(server.settings.key_file.read_text())["hash_key"]
    body = client.get("/userInfoHash", params={"extensionId": "101", "accountId": "999"}).json()
    assert body == {
        "extensionId": hashlib.sha256(f"101:{key}".encode()).hexdigest(),
        "accountId": hashlib.sha256(f"999:{key}".encode()).hexdigest(),
    }


def test_hostname_is_the_raw_hostname(client: httpx.Client, jwt: str) -> None:
    response = client.get("/hostname", headers=auth(jwt))
    assert response.status_code == 200 and response.text == "testcrm.local"


def test_auth_validation_is_for_oauth_platforms_only(client: httpx.Client, jwt: str) -> None:
    response = client.get("/authValidation", headers=auth(jwt))
    assert response.status_code == 400 and "OAuth" in response.json()["error"]


def test_search_by_name_finds_the_contact(client: httpx.Client, jwt: str) -> None:
    phone = new_phone()
    name = f"Searchable {phone[-6:]}"
    client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": name, "newContactType": "contact"},
        headers=auth(jwt),
    )
    found = client.get("/custom/contact/search", params={"name": name}, headers=auth(jwt)).json()
    assert found["successful"] is True and [c["name"] for c in found["contact"]] == [name]
    missing = client.get(
        "/custom/contact/search", params={"name": "nobody-xyz-123"}, headers=auth(jwt)
    ).json()
    assert missing["returnMessage"]["message"] == "No contact found with name nobody-xyz-123 "


def test_disposition_updates_the_logged_activity(client: httpx.Client, jwt: str, crm: CrmView) -> None:
    phone = new_phone()
    contact = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Dispo", "newContactType": "contact"},
        headers=auth(jwt),
    ).json()["contact"]
    session = f"dispo-{phone}"
    unknown = client.put(
        "/callDisposition", json={"sessionId": session, "dispositions": {"outcome": "won"}}, headers=auth(jwt)
    ).json()
    assert unknown["returnMessage"]["message"] == "Cannot find log"
    client.post("/callLog", json=call_log_body(session, contact["id"], phone), headers=auth(jwt))
    done = client.put(
        "/callDisposition", json={"sessionId": session, "dispositions": {"outcome": "won"}}, headers=auth(jwt)
    ).json()
    assert done["successful"] is True
    assert crm.activities_of(contact["id"])[0]["disposition"] == {"outcome": "won"}


def test_call_log_details_come_from_the_crm(client: httpx.Client, jwt: str) -> None:
    phone = new_phone()
    contact = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Details", "newContactType": "contact"},
        headers=auth(jwt),
    ).json()["contact"]
    session = f"details-{phone}"
    client.post(
        "/callLog", json=call_log_body(session, contact["id"], phone, note="remember me"), headers=auth(jwt)
    )
    body = client.get(
        "/callLog", params={"sessionIds": session, "requireDetails": "true"}, headers=auth(jwt)
    ).json()
    log = body["logs"][0]
    assert log["matched"] is True and log["logData"]["note"] == "remember me"
    assert "- Note: remember me" in log["logData"]["fullBody"]


def test_user_settings_round_trip(client: httpx.Client, jwt: str) -> None:
    assert client.get("/user/settings", headers=auth(jwt)).json() == {}
    saved = client.post(
        "/user/settings",
        json={"userSettings": {"addCallLogNote": {"value": False}, "logDateFormat": {"value": "YYYY-MM-DD"}}},
        headers=auth(jwt),
    ).json()
    assert saved["userSettings"]["addCallLogNote"] == {"value": False}
    removed = client.post(
        "/user/settings", json={"settingKeysToRemove": ["logDateFormat"]}, headers=auth(jwt)
    )
    assert removed.json() == {"userSettings": {"addCallLogNote": {"value": False}}}
    assert client.get("/user/settings", headers=auth(jwt)).json() == {"addCallLogNote": {"value": False}}
    assert client.get("/user/preloadSettings").text == "Cannot find rc user login"


def test_settings_shape_the_logged_body(client: httpx.Client, jwt: str, crm: CrmView) -> None:
    client.post(
        "/user/settings", json={"userSettings": {"addCallLogNote": {"value": False}}}, headers=auth(jwt)
    )
    phone = new_phone()
    contact = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Quiet", "newContactType": "contact"},
        headers=auth(jwt),
    ).json()["contact"]
    client.post(
        "/callLog",
        json=call_log_body(f"quiet-{phone}", contact["id"], phone, note="secret note"),
        headers=auth(jwt),
    )
    body = str(crm.activities_of(contact["id"])[0]["body"])
    assert "secret note" not in body and "- Result: Call connected" in body


def test_migrate_command_creates_the_schema(tmp_path: Path) -> None:
    database = tmp_path / "fresh.sqlite3"
    result = subprocess.run(
        [sys.executable, "-m", "appconnect.cli", "migrate", "--database-url", f"sqlite:///{database}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    tables = {
        r[0] for r in sqlite3.connect(database).execute("select name from sqlite_master where type='table'")
    }
    assert {"users", "call_logs", "message_logs", "account_data", "locks"} <= tables


def test_a_call_is_logged_once_per_agent_identity_legacy_rows_included(
    client: httpx.Client, jwt: str, crm: CrmView
) -> None:
    """The contract's callLogLookup: a log without any agent identity (an older client) or with only the
    extension number answers for the same agent sending a hashed id later; another agent may log the call."""
    phone = new_phone()
    contact = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Ada", "newContactType": "contact"},
        headers=auth(jwt),
    ).json()["contact"]["id"]

    def log(session: str, **identity: object) -> dict[str, object]:
        response = client.post(
            "/callLog", json=call_log_body(session, contact, phone, **identity), headers=auth(jwt)
        )
        assert response.status_code == 200, response.text
        answer: dict[str, object] = response.json()
        return answer

    anonymous = f"legacy-{new_phone()}"
    assert log(anonymous)["successful"] is True  # no identity at all
    assert log(anonymous, hashedExtensionId="h-101", extensionNumber="101")["successful"] is False

    by_extension = f"ext-{new_phone()}"
    assert log(by_extension, extensionNumber="101")["successful"] is True
    again = log(by_extension, hashedExtensionId="h-101", extensionNumber="101")
    assert again["successful"] is False and "Existing log" in str(again["returnMessage"])
    # a transferred call: the other agent logs it too, once
    assert log(by_extension, hashedExtensionId="h-202", extensionNumber="202")["successful"] is True
    assert log(by_extension, hashedExtensionId="h-202", extensionNumber="202")["successful"] is False
