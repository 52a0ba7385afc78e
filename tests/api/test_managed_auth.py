"""Managed auth: an admin, verified with RingCentral (a fake platform on loopback), stores the CRM's login fields or
OAuth app once; users of that account log in without them, nobody else reads or uses them, and no secret is ever
answered or logged (SQLite and PostgreSQL; the test CRM for API keys, a fake Pipedrive for OAuth)."""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import Iterator

import httpx
import pytest

from appconnect.flows.managed_auth import PLACEHOLDER
from appconnect.store.sql import sql
from tests.api.test_user_and_first_write import rows
from tests.conftest import LiveServer, connector_server, crm_admin_headers, database_url_for, new_phone
from tests.connectors.pipedrive.fake_pipedrive import FakePipedrive
from tests.connectors.vinsolutions.fake_vinsolutions import DEALER_ID, USER_ID, FakeVinSolutions
from tests.support.fake_ringcentral import FakeRingCentral

COMPANY_APP = "company-app"
COMPANY_SECRET = "company-secret-" + uuid.uuid4().hex
SERVER_APP = "server-app"
_ROWS = sql("SELECT data_key, data FROM managed_auth")


@pytest.fixture(scope="module")
def rc() -> Iterator[FakeRingCentral]:
    with FakeRingCentral() as fake:
        yield fake


@pytest.fixture(scope="module")
def pipedrive() -> Iterator[FakePipedrive]:
    """Pipedrive knows only the company's own OAuth app; its 60 s tokens make every request refresh first."""
    with FakePipedrive(client_id=COMPANY_APP, client_secret=COMPANY_SECRET, expires_in=60) as fake:
        yield fake


@pytest.fixture(scope="module")
def vinsolutions() -> Iterator[FakeVinSolutions]:
    with FakeVinSolutions() as fake:
        yield fake


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    rc: FakeRingCentral,
    pipedrive: FakePipedrive,
    vinsolutions: FakeVinSolutions,
) -> Iterator[LiveServer]:
    """The test CRM, VinSolutions, and Pipedrive (configured with the server's own app, which Pipedrive does
    not know)."""
    folder = tmp_path_factory.mktemp(f"managed-{request.param}")
    env = {
        **vinsolutions.env(),
        **pipedrive.env(),
        "PIPEDRIVE_CLIENT_ID": SERVER_APP,
        "PIPEDRIVE_CLIENT_SECRET": "server-secret",
    }
    with connector_server(
        env,
        folder,
        database_url_for(request.param, folder),
        ringcentral_server=rc.base_url,
        embedded_testcrm=True,
    ) as live:
        yield live


def new_account() -> str:
    return str(uuid.uuid4().int)[:12]


def rc_header(token: str) -> dict[str, str]:
    return {"X-RC-Access-Token": token}


def new_crm_key(client: httpx.Client) -> str:
    """A new test-CRM company and its API key."""
    answer = client.post(
        "/testcrm/api/v1/api-keys", json={"name": f"Co {uuid.uuid4().hex[:6]}"}, headers=crm_admin_headers()
    )
    assert answer.status_code == 201, answer.text
    key: str = answer.json()["apiKey"]
    return key


def login(client: httpx.Client, rc_token: str, api_key: str | None = None) -> httpx.Response:
    body: dict[str, object] = {"platform": "testcrm", "hostname": "testcrm.local"}
    if api_key is not None:
        body["apiKey"] = api_key
    return client.post("/apiKeyLogin", json=body, headers=rc_header(rc_token))


def session(client: httpx.Client, rc_token: str, api_key: str) -> dict[str, str]:
    """An admin's own App Connect session (the admin page needs one) with their RingCentral token."""
    answer = login(client, rc_token, api_key)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['jwtToken']}", **rc_header(rc_token)}


def save(client: httpx.Client, headers: dict[str, str], values: dict[str, object]) -> httpx.Response:
    return client.post("/admin/managedAuth", json={"scope": "org", "values": values}, headers=headers)


def state(client: httpx.Client, rc_token: str, platform: str = "testcrm") -> dict[str, object]:
    answer = client.get("/apiKeyManagedAuthState", params={"platform": platform}, headers=rc_header(rc_token))
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def contact_created(client: httpx.Client, jwt: str, phone: str) -> None:
    created = client.post(
        "/contact",
        json={"phoneNumber": phone, "newContactName": "Ada Lovelace", "newContactType": "contact"},
        headers={"Authorization": f"Bearer {jwt}"},
    )
    assert created.status_code == 200, created.text


def found_in(client: httpx.Client, api_key: str, phone: str) -> bool:
    """Whether the CRM company of `api_key` holds a contact with `phone` (asked with that key directly)."""
    jwt = login(client, "", api_key).json()["jwtToken"]
    answer = client.get("/contact", params={"phoneNumber": phone}, headers={"Authorization": f"Bearer {jwt}"})
    return any(not c.get("isNewContact") for c in answer.json()["contact"])


# --- API-key CRM ------------------------------------------------------------------------------------------------


def test_users_of_the_account_log_in_with_the_key_the_admin_stored(
    client: httpx.Client, rc: FakeRingCentral
) -> None:
    account = new_account()
    admin, agent = rc.extension(account, admin=True), rc.extension(account)
    company_key = new_crm_key(client)
    headers = session(client, admin, new_crm_key(client))
    # before: the agent has to type the key
    assert state(client, agent)["missingRequiredFieldConsts"] == ["apiKey"]

    saved = save(client, headers, {"apiKey": company_key})
    assert saved.status_code == 200 and saved.text == "Shared authentication updated"

    assert state(client, agent) == {
        "hasManagedAuth": True,
        "allRequiredFieldsSatisfied": True,
        "visibleFieldConsts": [],
        "missingRequiredFieldConsts": [],
        "fallbackToManualAuth": False,
    }
    answer = login(client, agent)
    assert answer.status_code == 200, answer.text
    phone = new_phone()
    contact_created(client, answer.json()["jwtToken"], phone)
    assert found_in(client, company_key, phone)  # the agent works in the company's CRM account


def test_the_admin_page_shows_which_fields_are_set_never_the_key(
    server: LiveServer, client: httpx.Client, rc: FakeRingCentral
) -> None:
    account = new_account()
    admin, agent = rc.extension(account, admin=True), rc.extension(account)
    company_key = new_crm_key(client)
    headers = session(client, admin, new_crm_key(client))
    assert save(client, headers, {"apiKey": company_key}).status_code == 200

    page = client.get("/admin/managedAuth", headers=headers)
    assert page.status_code == 200
    body = page.json()
    assert body["hasManagedAuth"] is True
    assert [f["const"] for f in body["orgFields"]] == ["apiKey"] and body["userFields"] == []
    assert body["orgValues"] == {"apiKey": {"hasValue": True, "value": PLACEHOLDER}}
    assert company_key not in page.text
    # at rest: one encrypted token, neither the key nor the field name readable
    stored = rows(server, _ROWS)
    assert stored and all(company_key not in r["data"] and "apiKey" not in r["data"] for r in stored)

    # the page saves the placeholder back: the key is unchanged and users still log in with it
    assert save(client, headers, {"apiKey": PLACEHOLDER}).status_code == 200
    assert login(client, agent).status_code == 200

    # an emptied field deletes it: the agent must type a key again
    assert save(client, headers, {"apiKey": ""}).status_code == 200
    emptied = client.get("/admin/managedAuth", headers=headers).json()
    assert emptied["orgValues"] == {"apiKey": {"hasValue": False, "value": ""}}
    refused = login(client, agent)
    assert refused.status_code == 400
    assert refused.json()["returnMessage"]["missingRequiredFieldConsts"] == ["apiKey"]


def test_fields_to_remove_delete_a_field(client: httpx.Client, rc: FakeRingCentral) -> None:
    account = new_account()
    admin, agent = rc.extension(account, admin=True), rc.extension(account)
    headers = session(client, admin, new_crm_key(client))
    assert save(client, headers, {"apiKey": new_crm_key(client)}).status_code == 200
    removed = client.post(
        "/admin/managedAuth", json={"scope": "org", "fieldsToRemove": ["apiKey"]}, headers=headers
    )
    assert removed.status_code == 200
    assert state(client, agent)["allRequiredFieldsSatisfied"] is False


def test_a_user_of_another_account_never_uses_the_key(client: httpx.Client, rc: FakeRingCentral) -> None:
    account_a, account_b = new_account(), new_account()
    admin_a = rc.extension(account_a, admin=True)
    admin_b, agent_b = rc.extension(account_b, admin=True), rc.extension(account_b)
    headers_a = session(client, admin_a, new_crm_key(client))
    assert save(client, headers_a, {"apiKey": new_crm_key(client)}).status_code == 200

    assert state(client, agent_b)["allRequiredFieldsSatisfied"] is False
    refused = login(client, agent_b)
    assert refused.status_code == 400 and refused.json()["returnMessage"]["missingRequiredFieldConsts"] == [
        "apiKey"
    ]
    # B's admin sees nothing set for B
    theirs = client.get("/admin/managedAuth", headers=session(client, admin_b, new_crm_key(client)))
    assert theirs.json()["orgValues"] == {"apiKey": {"hasValue": False, "value": ""}}
    # a login without a RingCentral token, or with a refused one, gets nothing either
    expired = rc.extension(account_a)
    rc.expire(expired)
    assert login(client, expired).status_code == 400
    no_token = client.post("/apiKeyLogin", json={"platform": "testcrm", "rcAccountId": account_a})
    assert no_token.status_code == 400


@pytest.mark.parametrize("who", ["non-admin", "other-admin", "expired", "none"])
def test_only_the_accounts_admin_reads_or_writes(client: httpx.Client, rc: FakeRingCentral, who: str) -> None:
    account = new_account()
    admin, agent = rc.extension(account, admin=True), rc.extension(account)
    company_key = new_crm_key(client)
    assert (
        save(client, session(client, admin, new_crm_key(client)), {"apiKey": company_key}).status_code == 200
    )
    intruder = {
        "non-admin": rc.extension(account),
        "other-admin": rc.extension(new_account(), admin=True),
        "expired": rc.extension(account, admin=True),
        "none": "",
    }[who]
    if who == "expired":
        rc.expire(intruder)
    # a session of their own (the page needs one) and the intruder's RingCentral token
    headers = {"Authorization": session(client, agent, new_crm_key(client))["Authorization"]}
    if intruder:
        headers.update(rc_header(intruder))

    read = client.get("/admin/managedAuth", headers=headers)
    written = save(client, headers, {"apiKey": new_crm_key(client)})
    if who == "other-admin":  # their own account's page: nothing of ours in it, and their save is theirs
        assert read.json()["orgValues"]["apiKey"]["hasValue"] is False
        assert written.status_code == 200
    else:
        assert read.status_code == 403 and read.text == "Admin validation failed"
        assert written.status_code == 403 and written.text == "Admin validation failed"
    # ours is untouched: the agent still works in the company's CRM account
    answer = login(client, agent)
    phone = new_phone()
    contact_created(client, answer.json()["jwtToken"], phone)
    assert found_in(client, company_key, phone)


def test_an_admins_own_login_never_becomes_the_accounts_key(
    client: httpx.Client, rc: FakeRingCentral
) -> None:
    account = new_account()
    admin, agent = rc.extension(account, admin=True), rc.extension(account)
    # the reference stores an admin's typed login fields as the account's when the login carries any extra field
    own = client.post(
        "/apiKeyLogin",
        json={"platform": "testcrm", "apiKey": new_crm_key(client), "additionalInfo": {"note": "x"}},
        headers=rc_header(admin),
    )
    assert own.status_code == 200, own.text
    assert login(client, admin, new_crm_key(client)).status_code == 200
    assert state(client, agent)["allRequiredFieldsSatisfied"] is False
    assert login(client, agent).status_code == 400


def test_a_refused_managed_login_lets_the_user_type_their_own(
    client: httpx.Client, rc: FakeRingCentral
) -> None:
    account = new_account()
    admin, agent = rc.extension(account, admin=True), rc.extension(account)
    headers = session(client, admin, new_crm_key(client))
    assert save(client, headers, {"apiKey": "revoked-" + uuid.uuid4().hex}).status_code == 200

    assert login(client, agent).status_code == 400  # the CRM refuses the stored key
    assert state(client, agent)["fallbackToManualAuth"] is True
    mine = new_crm_key(client)
    assert login(client, agent, mine).status_code == 200  # the typed key is used, not the stored one
    assert state(client, agent)["fallbackToManualAuth"] is False


def test_state_requests_need_a_platform_and_a_token(client: httpx.Client, rc: FakeRingCentral) -> None:
    agent = rc.extension(new_account())
    assert client.get("/apiKeyManagedAuthState", headers=rc_header(agent)).text == "Missing platform name"
    missing = client.get("/apiKeyManagedAuthState", params={"platform": "testcrm"})
    assert missing.status_code == 400 and missing.text == "Missing RingCentral access token"
    garbage = client.get(
        "/apiKeyManagedAuthState",
        params={"platform": "testcrm", "rcAccessToken": "garbage-" + uuid.uuid4().hex},
    )
    assert garbage.status_code == 403
    # a CRM without managed fields: the whole login form
    assert state(client, agent, "pipedrive") == {
        "hasManagedAuth": False,
        "allRequiredFieldsSatisfied": False,
        "visibleFieldConsts": None,
        "missingRequiredFieldConsts": [],
        "fallbackToManualAuth": False,
    }


def test_options_of_a_field_without_a_connector_list(client: httpx.Client, rc: FakeRingCentral) -> None:
    admin, agent = rc.extension(new_account(), admin=True), rc.extension(new_account())
    ask = {"fieldConst": "apiKey"}
    answer = client.post(
        "/admin/managedAuth/options", params={"platform": "testcrm"}, json=ask, headers=rc_header(admin)
    )
    assert answer.status_code == 200 and answer.json() == []
    refused = client.post(
        "/admin/managedAuth/options", params={"platform": "testcrm"}, json=ask, headers=rc_header(agent)
    )
    assert refused.status_code == 403
    no_field = client.post(
        "/admin/managedAuth/options", params={"platform": "testcrm"}, json={}, headers=rc_header(admin)
    )
    assert no_field.status_code == 400 and no_field.text == "Missing managed auth field"
    assert (
        client.post("/admin/managedAuth/options", json=ask, headers=rc_header(admin)).text
        == "Missing platform name"
    )


# --- a CRM with account and per-extension fields (VinSolutions: the dealer, then each user's CRM user) --------

VIN_HOST = "vinsolutions.app.coxautoinc.com"


def vin_login(
    client: httpx.Client, rc_token: str, additional: dict[str, str] | None = None
) -> httpx.Response:
    body: dict[str, object] = {"platform": "vinsolutions", "hostname": VIN_HOST}
    if additional is not None:
        body["additionalInfo"] = additional
    return client.post("/apiKeyLogin", json=body, headers=rc_header(rc_token) if rc_token else {})


def test_the_admin_picks_the_dealer_and_each_users_crm_user(
    client: httpx.Client, rc: FakeRingCentral
) -> None:
    account = new_account()
    admin, agent, newcomer = rc.extension(account, admin=True), rc.extension(account), rc.extension(account)
    own = vin_login(client, "", {"dealerId": str(DEALER_ID), "crmUserId": str(USER_ID)})
    assert own.status_code == 200, own.text
    headers = {"Authorization": f"Bearer {own.json()['jwtToken']}", **rc_header(admin)}

    def options(field: str, **account_values: str) -> list[dict[str, str]]:
        answer = client.post(
            "/admin/managedAuth/options",
            params={"platform": "vinsolutions"},
            json={"fieldConst": field, "accountValues": account_values},
            headers=rc_header(admin),
        )
        assert answer.status_code == 200, answer.text
        found: list[dict[str, str]] = answer.json()
        return found

    assert str(DEALER_ID) in {o["value"] for o in options("dealerId")}
    assert options("crmUserId") == []  # no dealer chosen yet
    assert save(client, headers, {"dealerId": str(DEALER_ID)}).status_code == 200
    assert str(USER_ID) in {o["value"] for o in options("crmUserId")}  # the stored dealer's users

    extension = rc.tokens[agent]
    per_user = client.post(
        "/admin/managedAuth",
        json={
            "scope": "user",
            "rcExtensionId": extension,
            "rcUserName": "Agent",
            "values": {"crmUserId": str(USER_ID)},
        },
        headers=headers,
    )
    assert per_user.status_code == 200
    page = client.get("/admin/managedAuth", headers=headers).json()
    assert page["orgValues"] == {"dealerId": {"hasValue": True, "value": str(DEALER_ID)}}
    assert page["userValues"] == [
        {
            "rcExtensionId": extension,
            "rcUserName": "Agent",
            "fields": {"crmUserId": {"hasValue": True, "value": str(USER_ID)}},
        }
    ]

    assert state(client, agent, "vinsolutions")["allRequiredFieldsSatisfied"] is True
    logged_in = vin_login(client, agent)
    assert logged_in.status_code == 200, logged_in.text
    # a colleague the admin has not mapped yet types only their own CRM user id
    theirs = state(client, newcomer, "vinsolutions")
    assert theirs["visibleFieldConsts"] == ["crmUserId"] and theirs["missingRequiredFieldConsts"] == [
        "crmUserId"
    ]
    assert vin_login(client, newcomer).json()["returnMessage"]["missingRequiredFieldConsts"] == ["crmUserId"]
    assert vin_login(client, newcomer, {"crmUserId": str(USER_ID)}).status_code == 200


def test_a_per_user_save_names_the_extension(client: httpx.Client, rc: FakeRingCentral) -> None:
    admin = rc.extension(new_account(), admin=True)
    headers = session(client, admin, new_crm_key(client))
    nameless = client.post("/admin/managedAuth", json={"scope": "user", "values": {}}, headers=headers)
    assert nameless.status_code == 400 and "rcExtensionId" in nameless.text
    too_long = client.post(
        "/admin/managedAuth", json={"scope": "user", "rcExtensionId": "9" * 65, "values": {}}, headers=headers
    )
    assert too_long.status_code == 400 and "rcExtensionId" in too_long.text
    # RingCentral's extension ids are plain: a row under anything else could never be any user's
    for odd in ("../60001", "60001\u202e", " 60001", ""):
        answer = client.post(
            "/admin/managedAuth",
            json={"scope": "user", "rcExtensionId": odd, "values": {}, "rcUserName": "Front desk"},
            headers=headers,
        )
        assert answer.status_code == 400 and "rcExtensionId" in answer.text, odd
    listed = client.get("/admin/managedAuth", headers=headers).json()["userValues"]
    assert listed == []


# --- OAuth CRM --------------------------------------------------------------------------------------------------


def oauth_login(client: httpx.Client, pipedrive: FakePipedrive, rc_token: str) -> httpx.Response:
    """The user approved the install in Pipedrive; the client hands the redirect to the server."""
    code = pipedrive.issue_code()
    return client.get(
        "/oauth-callback",
        params={
            "callbackUri": f"{pipedrive.redirect_uri}?code={code}&state=platform%3Dpipedrive",
            "hostname": "temp",
            "rcAccessToken": rc_token,
        },
    )


def refused_by_pipedrive(answer: httpx.Response) -> bool:
    """The server exchanged the code with an app Pipedrive does not know (its own): no session."""
    body = answer.json()
    return "jwtToken" not in body and body["returnMessage"]["message"].startswith("Could not connect")


def oauth_state(client: httpx.Client, rc_token: str) -> dict[str, object]:
    answer = client.get(
        "/oauthManagedAuthState", params={"platform": "pipedrive"}, headers=rc_header(rc_token)
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_the_accounts_oauth_app_logs_its_users_in(
    client: httpx.Client, rc: FakeRingCentral, pipedrive: FakePipedrive
) -> None:
    account, other = new_account(), new_account()
    admin, agent = rc.extension(account, admin=True), rc.extension(account)
    stranger = rc.extension(other, admin=True)
    # with the server's own app (which Pipedrive does not know), nobody logs in
    assert refused_by_pipedrive(oauth_login(client, pipedrive, agent))

    cached = client.post(
        "/admin/managedOAuth/cache",
        json={"values": {"clientId": COMPANY_APP, "clientSecret": COMPANY_SECRET}},
        headers=rc_header(admin),
    )
    assert cached.status_code == 200 and cached.json() == {"successful": True}
    pending = oauth_state(client, admin)
    assert pending["isAdmin"] is True and pending["hasPendingOAuth"] is True
    assert pending["pendingValues"] == {"clientId": COMPANY_APP, "clientSecret": PLACEHOLDER}
    # the pending app is the admin's until their own login completes it
    assert oauth_state(client, agent) == {
        "isAdmin": False,
        "hasAccountOAuth": False,
        "hasPendingOAuth": False,
    }

    assert "jwtToken" in oauth_login(client, pipedrive, admin).json()
    completed = oauth_state(client, agent)
    assert completed["hasAccountOAuth"] is True
    values = completed["oauthValues"]
    assert isinstance(values, dict) and values["clientId"] == COMPANY_APP and "clientSecret" not in values

    answer = oauth_login(client, pipedrive, agent)
    assert answer.status_code == 200 and "jwtToken" in answer.json(), answer.text
    # the 60 s token is refreshed before the lookup, with the company's app
    token_calls = len(pipedrive.requests_to("/oauth/token"))
    lookup = client.get(
        "/contact",
        params={"phoneNumber": new_phone()},
        headers={"Authorization": f"Bearer {answer.json()['jwtToken']}"},
    )
    assert lookup.status_code == 200, lookup.text
    assert len(pipedrive.requests_to("/oauth/token")) > token_calls

    # another account's admin neither sees nor uses it
    assert oauth_state(client, stranger) == {
        "isAdmin": True,
        "hasAccountOAuth": False,
        "hasPendingOAuth": False,
    }
    assert refused_by_pipedrive(oauth_login(client, pipedrive, stranger))
    # nor does a login that names the account without a RingCentral token
    code = pipedrive.issue_code()
    bare = client.get(
        "/oauth-callback",
        params={
            "callbackUri": f"{pipedrive.redirect_uri}?code={code}&state=platform%3Dpipedrive",
            "rcAccountId": account,
        },
    )
    assert refused_by_pipedrive(bare)

    # the admin resets it: users are back to the server's app
    reset = client.delete(
        "/admin/managedOAuth/account", params={"platform": "pipedrive"}, headers=rc_header(admin)
    )
    assert reset.status_code == 200 and reset.json() == {"successful": True}
    assert oauth_state(client, agent)["hasAccountOAuth"] is False
    assert refused_by_pipedrive(oauth_login(client, pipedrive, agent))


def test_only_an_admin_manages_the_oauth_app(client: httpx.Client, rc: FakeRingCentral) -> None:
    account = new_account()
    admin, agent = rc.extension(account, admin=True), rc.extension(account)
    values = {"values": {"clientId": "x", "clientSecret": "y"}}
    assert client.post("/admin/managedOAuth/cache", json=values, headers=rc_header(agent)).status_code == 403
    assert client.delete("/admin/managedOAuth/cache", headers=rc_header(agent)).status_code == 403
    reset = client.delete(
        "/admin/managedOAuth/account", params={"platform": "pipedrive"}, headers=rc_header(agent)
    )
    assert reset.status_code == 403
    # the admin's pending app, cleared, is gone
    assert client.post("/admin/managedOAuth/cache", json=values, headers=rc_header(admin)).status_code == 200
    assert client.delete("/admin/managedOAuth/cache", headers=rc_header(admin)).json() == {"successful": True}
    assert oauth_state(client, admin)["hasPendingOAuth"] is False
    no_platform = client.delete("/admin/managedOAuth/account", headers=rc_header(admin))
    assert no_platform.status_code == 400 and no_platform.text == "Missing platform name"


def test_no_secret_in_any_answer_or_log_line(
    client: httpx.Client, rc: FakeRingCentral, pipedrive: FakePipedrive, caplog: pytest.LogCaptureFixture
) -> None:
    account = new_account()
    admin, agent = rc.extension(account, admin=True), rc.extension(account)
    company_key = new_crm_key(client)
    answers: list[str] = []
    with caplog.at_level("DEBUG"):
        headers = session(client, admin, new_crm_key(client))
        answers.append(save(client, headers, {"apiKey": company_key}).text)
        answers.append(client.get("/admin/managedAuth", headers=headers).text)
        answers.append(
            client.get(
                "/apiKeyManagedAuthState", params={"platform": "testcrm"}, headers=rc_header(agent)
            ).text
        )
        answers.append(login(client, agent).text)
        answers.append(
            client.post(
                "/admin/managedOAuth/cache",
                json={"values": {"clientId": COMPANY_APP, "clientSecret": COMPANY_SECRET}},
                headers=rc_header(admin),
            ).text
        )
        answers.append(oauth_state(client, admin).__repr__())
        answers.append(oauth_login(client, pipedrive, admin).text)
        answers.append(oauth_state(client, agent).__repr__())
    for secret in (company_key, COMPANY_SECRET):
        assert all(secret not in answer for answer in answers)
        assert secret not in caplog.text


def test_the_admin_page_needs_the_admins_session(client: httpx.Client, rc: FakeRingCentral) -> None:
    admin = rc.extension(new_account(), admin=True)
    read = client.get("/admin/managedAuth", headers=rc_header(admin))
    assert read.status_code == 400 and read.text == "Please go to Settings and authorize CRM platform"
    written = client.post("/admin/managedAuth", json={"values": {"apiKey": "x"}}, headers=rc_header(admin))
    assert written.status_code == 400 and written.text == "Please go to Settings and authorize CRM platform"


@pytest.mark.parametrize("odd_id", ["9" * 200, None, "60001/../x\u202e"])
def test_an_odd_extension_id_from_ringcentral_is_no_identity(
    client: httpx.Client, rc: FakeRingCentral, odd_id: object
) -> None:
    """RingCentral's extension ids are numbers; an answer naming none, or something else, is not trusted to key
    the account's rows (a 200-digit id would not fit the row's key: a database error, not a login answer)."""
    account = new_account()
    admin, agent = rc.extension(account, admin=True), rc.extension(account)
    headers = session(client, admin, new_crm_key(client))
    assert save(client, headers, {"apiKey": "revoked-" + uuid.uuid4().hex}).status_code == 200
    rc.odd_answers[agent] = {"id": odd_id}
    try:
        refused = login(client, agent)
        asked = client.get(
            "/apiKeyManagedAuthState", params={"platform": "testcrm"}, headers=rc_header(agent)
        )
    finally:
        del rc.odd_answers[agent]
    # not the account's user as far as the server can tell: no managed key, so the key must be typed
    assert refused.status_code == 400, refused.text
    assert refused.json()["returnMessage"]["message"] == "API key is required."
    assert asked.status_code == 403 and asked.text == "RingCentral user validation failed"


def test_two_admins_saving_one_extension_at_once_lose_neither(
    server: LiveServer, client: httpx.Client, rc: FakeRingCentral
) -> None:
    """A save reads the extension's row, changes it and writes it back: one admin naming the extension while
    another sets its CRM user must leave both."""
    account = new_account()
    admin, other_admin = rc.extension(account, admin=True), rc.extension(account, admin=True)
    own = vin_login(client, "", {"dealerId": str(DEALER_ID), "crmUserId": str(USER_ID)})
    assert own.status_code == 200, own.text
    jwt = {"Authorization": f"Bearer {own.json()['jwtToken']}"}
    extensions = [str(80000 + i) for i in range(12)]

    def save_one(job: tuple[str, bool]) -> int:
        extension, names = job
        body: dict[str, object] = {"scope": "user", "rcExtensionId": extension}
        if names:
            body.update(rcUserName=f"Desk {extension}", values={})
        else:
            body.update(values={"crmUserId": str(USER_ID)})
        with httpx.Client(base_url=server.base_url, timeout=30) as own_client:
            token = admin if names else other_admin
            return own_client.post(
                "/admin/managedAuth", json=body, headers={**jwt, **rc_header(token)}
            ).status_code

    jobs = [(extension, names) for extension in extensions for names in (True, False)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(save_one, jobs)) == {200}
    page = client.get("/admin/managedAuth", headers={**jwt, **rc_header(admin)}).json()
    rows = {row["rcExtensionId"]: row for row in page["userValues"]}
    assert {e: rows[e]["rcUserName"] for e in extensions} == {e: f"Desk {e}" for e in extensions}
    assert all(rows[e]["fields"]["crmUserId"]["hasValue"] for e in extensions)
