"""The Google Sheets settings routes through the real server: the picker page, create/remove/select a sheet,
and the admin's sheet for the account (Google and RingCentral faked on loopback).

What the App Connect client does: it opens `/googleSheets/filePicker?token=<session JWT>` in a window, posts
`/googleSheets/sheet?jwtToken=…` with `{name}` for "Create new sheet", and the page posts the picked file to
`/googleSheets/selectedSheet` with the Google token it was given; the admin's page adds `rcAccessToken`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from appconnect.connectors.googlesheets.connector import CALL_LOGS, CONTACTS, MESSAGE_LOGS
from tests.conftest import LiveServer, new_phone
from tests.connectors.googlesheets.fake_googlesheets import CLIENT_ID, FakeGoogleSheets
from tests.support.e2e import BACKENDS, backend_server, ringcentral_fixture
from tests.support.fake_ringcentral import FakeRingCentral

JsonDict = dict[str, Any]
PICKER_KEY = "AIza-fake-picker-key"
PROJECT_ID = "367818015386"
HOSTILE = "</script><script>alert(1)</script><!-- & \u2028 \"quoted\" 'single'"
_CONFIG = re.compile(r'<script type="application/json" id="picker-config">(.*?)</script>', re.S)


rc = ringcentral_fixture()


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    _fake_google_server: FakeGoogleSheets,
    rc: FakeRingCentral,
) -> Iterator[LiveServer]:
    env = {
        **_fake_google_server.env(),
        "GOOGLESHEETS_PICKER_KEY": PICKER_KEY,
        "GOOGLESHEETS_PROJECT_ID": PROJECT_ID,
    }
    yield from backend_server("sheets-picker", request, env, tmp_path_factory, ringcentral_server=rc.base_url)


@pytest.fixture
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base_url, timeout=30) as client:
        yield client


class GoogleUser:
    """One Google user of App Connect: logs in through the server as the client does."""

    def __init__(self, http: httpx.Client, fake: FakeGoogleSheets) -> None:
        self.http = http
        self.fake = fake
        self.sub = fake.add_user("Jordan Lee", f"jordan-{uuid.uuid4().hex[:6]}@example.test")
        consent = http.get(
            f"{fake.base_url}/o/oauth2/auth",
            params={
                "client_id": CLIENT_ID,
                "response_type": "code",
                "redirect_uri": fake.redirect_uri,
                "state": "platform=googleSheets",
                "login_hint": self.sub,
            },
        )
        assert consent.status_code == 302, consent.text
        answer = http.get(
            "/oauth-callback",
            params={"callbackUri": consent.headers["location"], "hostname": "temp", "rcAccountId": "rc-1"},
        )
        assert answer.status_code == 200, answer.text
        self.jwt: str = answer.json()["jwtToken"]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.jwt}"}

    def settings(self) -> JsonDict:
        answer = self.http.get("/user/settings", headers=self.auth)
        assert answer.status_code == 200, answer.text
        body: JsonDict = answer.json()
        return body

    def setting(self, key: str) -> Any:
        return (self.settings().get(key) or {}).get("value")

    def page(self, path: str = "/googleSheets/filePicker", **params: str) -> httpx.Response:
        """The picker page as the client opens it (`?token=<JWT>`), or with the query given."""
        return self.http.get(path, params=params or {"token": self.jwt})

    def google_tokens(self) -> list[str]:
        """Every access token the fake has issued for this Google user."""
        with self.fake._lock:
            return [token for token, sub in self.fake._sub_of.items() if sub == self.sub]


@pytest.fixture
def user(http: httpx.Client, _fake_google_server: FakeGoogleSheets) -> GoogleUser:
    return GoogleUser(http, _fake_google_server)


@pytest.fixture
def other(http: httpx.Client, _fake_google_server: FakeGoogleSheets) -> GoogleUser:
    return GoogleUser(http, _fake_google_server)


def page_config(page: httpx.Response) -> JsonDict:
    found = _CONFIG.search(page.text)
    assert found is not None, page.text
    config: JsonDict = json.loads(found.group(1))
    return config


def picked(url: str, name: str = "Team Calls") -> JsonDict:
    return {"name": name, "url": url, "mimeType": "application/vnd.google-apps.spreadsheet"}


# --- the picker page --------------------------------------------------------------------------------------------


def test_the_picker_page_holds_its_own_users_token_and_is_never_cached(
    user: GoogleUser, other: GoogleUser
) -> None:
    page = user.page()
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    csp = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    script_sources = csp["script-src"].split()
    assert script_sources[0].startswith("'nonce-") and script_sources[1:] == ["https://apis.google.com"]
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    nonce = script_sources[0][len("'nonce-") : -1]
    assert page.text.count(f'nonce="{nonce}"') == 1  # only the page's own script runs
    config = page_config(page)
    assert config["accessToken"] == user.google_tokens()[-1]
    assert config["accessToken"] not in other.google_tokens()
    assert (config["apiKey"], config["projectId"]) == (PICKER_KEY, PROJECT_ID)
    assert config["selectUrl"].endswith("/googleSheets/selectedSheet")
    assert config["rcAccessToken"] is None
    assert user.http.get("/googleSheets/filePicker", params={"jwtToken": user.jwt}).status_code == 200


def test_the_picker_page_refreshes_a_token_that_is_due(
    http: httpx.Client, _fake_google_server: FakeGoogleSheets
) -> None:
    fake = _fake_google_server
    fake.grants.expires_in = 60  # inside the server's refresh margin from the start
    try:
        user = GoogleUser(http, fake)
    finally:
        fake.grants.expires_in = 3600
    first = user.google_tokens()
    refreshes = fake.grants.refresh_calls
    config = page_config(user.page())
    assert fake.grants.refresh_calls == refreshes + 1
    assert config["accessToken"] not in first and fake.grants.access_valid(config["accessToken"])


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ({}, "Please go to Settings and authorize CRM platform"),
        ({"token": "not-a-jwt"}, "User not found"),
        ({"jwtToken": "not.a.jwt"}, "User not found"),
    ],
)
def test_a_picker_page_without_a_valid_session_is_refused(
    http: httpx.Client, query: dict[str, str], text: str
) -> None:
    page = http.get("/googleSheets/filePicker", params=query)
    assert (page.status_code, page.text) == (400, text)
    assert "accessToken" not in page.text


def test_the_page_escapes_a_hostile_sheet_name(user: GoogleUser) -> None:
    saved = user.http.post(
        "/user/settings", json={"userSettings": {"googleSheetsName": {"value": HOSTILE}}}, headers=user.auth
    )
    assert saved.status_code == 200, saved.text
    page = user.page()
    assert page.status_code == 200, page.text
    assert "<script>alert(1)" not in page.text and "<!--" not in page.text
    assert page.text.count("</script>") == 2  # the config block's and the page script's own ends
    assert page_config(page)["currentName"] == HOSTILE


# --- the user's sheet -------------------------------------------------------------------------------------------


def test_a_new_sheet_is_made_in_the_references_layout_and_becomes_the_users(user: GoogleUser) -> None:
    made = user.http.post(
        "/googleSheets/sheet", params={"jwtToken": user.jwt}, json={"name": "Calls and Texts"}
    )
    assert made.status_code == 200, made.text
    body = made.json()
    [book] = user.fake.spreadsheets_of(user.sub)
    assert body == {
        "name": "Calls and Texts",
        "url": f"https://docs.google.com/spreadsheets/d/{book.spreadsheet_id}/edit",
    }
    assert [sheet.title for sheet in book.sheets] == [CALL_LOGS.title, MESSAGE_LOGS.title, CONTACTS.title]
    for tab in (CALL_LOGS, MESSAGE_LOGS, CONTACTS):
        assert user.fake.rows(book.spreadsheet_id, tab.title) == [list(tab.header)]
    assert (user.setting("googleSheetsName"), user.setting("googleSheetsUrl")) == (body["name"], body["url"])

    again = user.http.post("/googleSheets/sheet", headers=user.auth, json={"name": "Calls and Texts"})
    assert again.json() == body and len(user.fake.spreadsheets_of(user.sub)) == 1  # found, not made twice

    phone = new_phone()
    contact = user.http.post(
        "/contact", json={"phoneNumber": phone, "newContactName": "Maya Patel"}, headers=user.auth
    )
    assert contact.status_code == 200 and contact.json()["successful"], contact.text
    assert user.fake.rows(book.spreadsheet_id, CONTACTS.title)[1][2:] == ["Maya Patel", phone]


def test_a_name_with_quotes_and_backslashes_is_found_again(user: GoogleUser) -> None:
    name = "Quinn's paper\\essay and more"
    first = user.http.post("/googleSheets/sheet", headers=user.auth, json={"name": name})
    again = user.http.post("/googleSheets/sheet", headers=user.auth, json={"name": name})
    assert first.status_code == 200, first.text
    assert again.json() == first.json() and first.json()["name"] == name
    assert [book.title for book in user.fake.spreadsheets_of(user.sub)] == [name]


def test_a_new_sheet_without_a_name_is_the_references_default(user: GoogleUser) -> None:
    made = user.http.post("/googleSheets/sheet", params={"jwtToken": user.jwt}, json={})
    assert made.status_code == 200, made.text
    assert made.json()["name"] == "RingCentral App Connect Sheet"


def test_removing_the_sheet_empties_the_users_settings_only(user: GoogleUser, other: GoogleUser) -> None:
    for who in (user, other):
        made = who.http.post("/googleSheets/sheet", headers=who.auth, json={"name": "Ours"})
        assert made.status_code == 200, made.text
    removed = user.http.delete("/googleSheets/sheet", params={"jwtToken": user.jwt})
    assert (removed.status_code, removed.text) == (200, "Sheet removed")
    assert (user.setting("googleSheetsName"), user.setting("googleSheetsUrl")) == ("", "")
    assert other.setting("googleSheetsName") == "Ours"
    assert len(user.fake.spreadsheets_of(user.sub)) == 1  # the spreadsheet stays in the user's Drive


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_sheet_calls_without_a_session_change_nothing(
    http: httpx.Client, user: GoogleUser, method: str
) -> None:
    for params, text in (
        ({}, "Please go to Settings and authorize CRM platform"),
        ({"jwtToken": "x.y.z"}, "User not found"),
    ):
        answer = http.request(method, "/googleSheets/sheet", params=params, json={"name": "Nope"})
        assert (answer.status_code, answer.text) == (400, text)
    assert user.fake.spreadsheets_of(user.sub) == []


def test_a_picked_sheet_becomes_the_pages_user_and_no_one_elses(user: GoogleUser, other: GoogleUser) -> None:
    token = page_config(user.page())["accessToken"]
    url = "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/edit?usp=drivesdk"
    answer = user.http.post(
        "/googleSheets/selectedSheet", json={"accessToken": token, "sheetData": picked(url)}
    )
    assert (answer.status_code, answer.json()) == (200, {"message": "Sheet selected"})
    assert (user.setting("googleSheetsName"), user.setting("googleSheetsUrl")) == ("Team Calls", url)
    assert other.setting("googleSheetsUrl") is None


def test_a_google_token_the_server_did_not_give_selects_nothing(user: GoogleUser) -> None:
    url = "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/edit"
    # the same Google user's token, issued to another app: Google's userinfo vouches for it all the same
    elsewhere = user.fake.issue_tokens(user.sub).access_token
    answer = user.http.post(
        "/googleSheets/selectedSheet", json={"accessToken": elsewhere, "sheetData": picked(url)}
    )
    assert answer.status_code == 403, answer.text
    refused = user.http.post(
        "/googleSheets/selectedSheet", json={"accessToken": "garbage", "sheetData": picked(url)}
    )
    assert (refused.status_code, refused.text) == (400, "User not found")
    assert user.setting("googleSheetsUrl") is None


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "https://evil.example/spreadsheets/d/1AbCdEfGhIjKlMnOpQrStUvWxYz",
        "https://docs.google.com/document/d/abc/edit",
    ],
)
def test_a_pick_that_is_no_google_sheet_is_refused(user: GoogleUser, url: str) -> None:
    token = page_config(user.page())["accessToken"]
    answer = user.http.post(
        "/googleSheets/selectedSheet", json={"accessToken": token, "sheetData": picked(url)}
    )
    assert answer.status_code == 400, answer.text
    assert user.setting("googleSheetsUrl") is None


# --- the admin's sheet ------------------------------------------------------------------------------------------


def test_an_admin_sets_the_accounts_sheet_and_reads_it_back(user: GoogleUser, rc: FakeRingCentral) -> None:
    account = str(uuid.uuid4().int)[:12]
    admin_token = rc.extension(account, admin=True)
    agent_token = rc.extension(account)
    kept = user.http.post(
        "/admin/settings",
        json={"adminSettings": {"userSettings": {"autoLogCalls": {"customizable": False, "value": True}}}},
        headers={"X-RC-Access-Token": admin_token},
    )
    assert kept.status_code == 200, kept.text

    page = user.page("/admin/googleSheets/filePicker", jwtToken=user.jwt, rcAccessToken=admin_token)
    assert page.status_code == 200, page.text
    config = page_config(page)
    assert (
        config["selectUrl"].endswith("/admin/googleSheets/selectedSheet")
        and config["rcAccessToken"] == admin_token
    )

    made = user.http.post(
        "/admin/googleSheets/sheet",
        params={"jwtToken": user.jwt, "rcAccessToken": admin_token},
        json={"name": "Company Calls", "customizable": True},
    )
    assert made.status_code == 200, made.text
    url = made.json()["url"]
    read = user.http.get(
        "/admin/googleSheets/config", params={"jwtToken": user.jwt, "rcAccessToken": admin_token}
    )
    assert read.json() == {
        "googleSheetsUrl": {"value": url, "customizable": True},
        "googleSheetsName": {"value": "Company Calls", "customizable": True},
    }

    picked_url = "https://docs.google.com/spreadsheets/d/1ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210/edit"
    selected = user.http.post(
        "/admin/googleSheets/selectedSheet",
        json={
            "accessToken": config["accessToken"],
            "sheetData": picked(picked_url, "Picked"),
            "customizable": False,
        },
        headers={"X-RC-Access-Token": admin_token},
    )
    assert (selected.status_code, selected.json()) == (200, {"message": "Admin sheet configuration saved"})
    preload = user.http.get("/user/preloadSettings", headers={"X-RC-Access-Token": agent_token})
    settings = preload.json()["userSettings"]
    assert settings["googleSheetsUrl"] == {"value": picked_url, "customizable": False}
    assert settings["autoLogCalls"] == {
        "customizable": False,
        "value": True,
    }  # the admin's other settings stay
    assert user.setting("googleSheetsUrl") == picked_url


def test_admin_sheet_routes_refuse_anyone_but_an_admin(user: GoogleUser, rc: FakeRingCentral) -> None:
    account = str(uuid.uuid4().int)[:12]
    admin_token = rc.extension(account, admin=True)
    agent_token = rc.extension(account)
    other_admin = rc.extension(str(uuid.uuid4().int)[:12], admin=True)
    set_by_admin = user.http.post(
        "/admin/googleSheets/sheet",
        params={"jwtToken": user.jwt, "rcAccessToken": admin_token},
        json={"name": "Admin Only"},
    )
    assert set_by_admin.status_code == 200, set_by_admin.text
    before = user.http.get(
        "/admin/googleSheets/config", params={"jwtToken": user.jwt, "rcAccessToken": admin_token}
    ).json()

    token = page_config(user.page())["accessToken"]
    url = "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/edit"
    for rc_token in (agent_token, "rc-garbage"):
        assert (
            user.page("/admin/googleSheets/filePicker", jwtToken=user.jwt, rcAccessToken=rc_token).status_code
            == 403
        )
        assert (
            user.http.post(
                "/admin/googleSheets/sheet",
                params={"jwtToken": user.jwt, "rcAccessToken": rc_token},
                json={"name": "X"},
            ).status_code
            == 403
        )
        selected = user.http.post(
            "/admin/googleSheets/selectedSheet",
            params={"rcAccessToken": rc_token},
            json={"accessToken": token, "sheetData": picked(url)},
        )
        assert (selected.status_code, selected.text) == (403, "Admin validation failed")
    for path in ("/admin/googleSheets/filePicker", "/admin/googleSheets/config"):
        missing = user.http.get(path, params={"rcAccessToken": admin_token})
        assert (missing.status_code, missing.text) == (400, "Please authorize admin access")
    mine = user.http.get(
        "/admin/googleSheets/config", params={"jwtToken": user.jwt, "rcAccessToken": admin_token}
    )
    assert mine.json() == before
    theirs = user.http.get(
        "/admin/googleSheets/config", params={"jwtToken": user.jwt, "rcAccessToken": other_admin}
    )
    assert theirs.json() == {"googleSheetsUrl": None, "googleSheetsName": None}


def test_no_token_reaches_the_logs(
    user: GoogleUser, rc: FakeRingCentral, caplog: pytest.LogCaptureFixture
) -> None:
    admin_token = rc.extension(str(uuid.uuid4().int)[:12], admin=True)
    url = "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789/edit"
    with caplog.at_level("DEBUG"):
        token = page_config(user.page())["accessToken"]
        user.page("/admin/googleSheets/filePicker", jwtToken=user.jwt, rcAccessToken=admin_token)
        user.http.post("/googleSheets/selectedSheet", json={"accessToken": token, "sheetData": picked(url)})
        user.http.post(
            "/googleSheets/selectedSheet", json={"accessToken": token + "x", "sheetData": picked(url)}
        )
        user.http.post("/googleSheets/sheet", headers=user.auth, json={"name": "Logged"})
    assert caplog.records  # the server did log these requests
    for secret in (token, user.jwt, admin_token):
        assert secret not in caplog.text
