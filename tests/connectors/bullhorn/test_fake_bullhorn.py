"""FakeBullhorn is as strict as Bullhorn documents: the traps a connector must get right, checked on the fake."""

from __future__ import annotations

import httpx
import pytest
from fake_bullhorn import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, FakeBullhorn

CREDENTIALS = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}


@pytest.fixture
def http(fake_bullhorn: FakeBullhorn) -> httpx.Client:
    return httpx.Client(base_url=fake_bullhorn.base_url, timeout=10, follow_redirects=False)


def _session(fake: FakeBullhorn, http: httpx.Client) -> dict[str, str]:
    tokens = fake.issue_tokens()
    answer = http.post(
        "/rest-east/rest-services/login", params={"version": "*", "access_token": tokens.access_token}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, str] = answer.json()
    return body


def _rest(body: dict[str, str]) -> str:
    """The fake's path of the session's restUrl."""
    return "/rest91/" + body["restUrl"].split("/", 3)[3]


def test_login_info_names_the_users_data_centre(fake_bullhorn: FakeBullhorn, http: httpx.Client) -> None:
    fake_bullhorn.add_corporation(2002, "corp2b", dc="west", swimlane="rest42")
    fake_bullhorn.add_user("agent.west", corporation=2002, user_id=7, first="W", last="W")
    answer = http.get("/rest/rest-services/loginInfo", params={"username": "agent.west"}).json()
    assert answer["oauthUrl"] == "https://auth-west.bullhornstaffing.com/oauth"
    assert answer["restUrl"] == "https://rest-west.bullhornstaffing.com/rest-services"


def test_a_wrong_data_centre_answers_307(fake_bullhorn: FakeBullhorn, http: httpx.Client) -> None:
    code = fake_bullhorn.issue_code()
    answer = http.post(
        "/auth-west/oauth/token",
        params={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            **CREDENTIALS,
        },
    )
    assert answer.status_code == 307
    assert answer.headers["location"].startswith("https://auth-east.bullhornstaffing.com/oauth/token?")
    tokens = fake_bullhorn.issue_tokens()
    login = http.post(
        "/rest-west/rest-services/login", params={"version": "*", "access_token": tokens.access_token}
    )
    assert login.status_code == 307
    body = _session(fake_bullhorn, http)
    wrong_swimlane = http.get(
        _rest(body).replace("/rest91/", "/rest42/") + "settings/userId",
        headers={"BhRestToken": body["BhRestToken"]},
    )
    assert wrong_swimlane.status_code == 307


def test_client_credentials_are_parameters_and_a_refresh_token_works_once(
    fake_bullhorn: FakeBullhorn, http: httpx.Client
) -> None:
    code = fake_bullhorn.issue_code()
    basic = http.post(
        "/auth-east/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert basic.status_code == 401  # Basic client auth is not how Bullhorn takes the secret
    tokens = http.post(
        "/auth-east/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, **CREDENTIALS},
    ).json()
    assert tokens["expires_in"] == 600
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **CREDENTIALS}
    first = http.post("/auth-east/oauth/token", data=refresh)
    second = http.post("/auth-east/oauth/token", data=refresh)  # a concurrent refresh with the same token
    assert first.status_code == 200 and first.json()["refresh_token"] != tokens["refresh_token"]
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert fake_bullhorn.refresh_refusals == 1


def test_an_access_token_lasts_ten_minutes(fake_bullhorn: FakeBullhorn, http: httpx.Client) -> None:
    tokens = fake_bullhorn.issue_tokens()
    fake_bullhorn.advance_time(601)
    answer = http.post(
        "/rest-east/rest-services/login", params={"version": "*", "access_token": tokens.access_token}
    )
    assert answer.status_code == 401


def test_put_creates_and_post_updates(fake_bullhorn: FakeBullhorn, http: httpx.Client) -> None:
    body = _session(fake_bullhorn, http)
    rest, headers = _rest(body), {"BhRestToken": body["BhRestToken"]}
    person = fake_bullhorn.add_person("Candidate", "Maya Patel", "4155550142")
    note = {"comments": "x", "personReference": {"id": person["id"]}, "dateAdded": 1773326120000}
    assert http.post(rest + "entity/Note", json=note, headers=headers).status_code == 405
    created = http.put(rest + "entity/Note", json=note, headers=headers)
    assert created.status_code == 200 and created.json()["changeType"] == "INSERT"
    note_id = created.json()["changedEntityId"]
    assert http.put(rest + f"entity/Note/{note_id}", json=note, headers=headers).status_code == 405
    updated = http.post(rest + f"entity/Note/{note_id}", json={"minutesSpent": 3}, headers=headers)
    assert updated.status_code == 200 and updated.json()["changeType"] == "UPDATE"


@pytest.mark.parametrize(
    "field,value",
    [("dateAdded", "2026-03-12T14:35:20.000Z"), ("dateAdded", 1773326120000.5), ("minutesSpent", 8.12)],
)
def test_times_are_epoch_ms_and_minutes_whole(
    fake_bullhorn: FakeBullhorn, http: httpx.Client, field: str, value: object
) -> None:
    """What the reference sends (an ISO string, a fraction of minutes) is refused."""
    body = _session(fake_bullhorn, http)
    person = fake_bullhorn.add_person("Lead", "Maya Patel", "4155550142")
    note = {"comments": "x", "personReference": {"id": person["id"]}, field: value}
    answer = http.put(_rest(body) + "entity/Note", json=note, headers={"BhRestToken": body["BhRestToken"]})
    assert answer.status_code == 400, answer.text
    assert fake_bullhorn.notes() == []


def test_an_idle_session_ends(fake_bullhorn: FakeBullhorn, http: httpx.Client) -> None:
    body = _session(fake_bullhorn, http)
    url, headers = _rest(body) + "settings/userId", {"BhRestToken": body["BhRestToken"]}
    assert http.get(url, headers=headers).status_code == 200
    fake_bullhorn.advance_time(601)
    assert http.get(url, headers=headers).status_code == 401


def test_a_session_reaches_only_its_own_corporation(fake_bullhorn: FakeBullhorn, http: httpx.Client) -> None:
    fake_bullhorn.add_corporation(2002, "corp2b", dc="east", swimlane="rest91")
    body = _session(fake_bullhorn, http)
    other = "/rest91/rest-services/corp2b/settings/userId"
    assert http.get(other, headers={"BhRestToken": body["BhRestToken"]}).status_code == 401


def test_a_client_contact_needs_a_company_and_unknown_fields_are_refused(
    fake_bullhorn: FakeBullhorn, http: httpx.Client
) -> None:
    body = _session(fake_bullhorn, http)
    rest, headers = _rest(body), {"BhRestToken": body["BhRestToken"]}
    assert http.put(rest + "entity/ClientContact", json={"name": "A B"}, headers=headers).status_code == 400
    assert (
        http.put(rest + "entity/Lead", json={"name": "A B", "nickname": "x"}, headers=headers).status_code
        == 400
    )


async def test_an_api_user_signs_in_with_its_password_and_a_wrong_one_gets_the_login_page(
    fake_bullhorn: FakeBullhorn,
) -> None:
    fake_bullhorn.add_user(
        "api.user", corporation=1001, user_id=590, first="A", last="U", password="right-pw"
    )
    params = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "action": "Login",
        "username": "api.user",
        "redirect_uri": REDIRECT_URI,
    }
    async with httpx.AsyncClient(base_url=fake_bullhorn.base_url) as http:
        wrong = await http.get("/auth-east/oauth/authorize", params={**params, "password": "wrong-pw"})
        right = await http.get("/auth-east/oauth/authorize", params={**params, "password": "right-pw"})
    assert wrong.status_code == 200 and "code=" not in wrong.headers.get("location", "")
    assert right.status_code == 302 and "code=" in right.headers["location"]
    assert fake_bullhorn.password_logins == 2


def _search(http: httpx.Client, body: dict[str, str], entity: str, query: str) -> httpx.Response:
    return http.post(
        _rest(body) + f"search/{entity}",
        params={"fields": "id,name", "count": 10},
        json={"query": query},
        headers={"BhRestToken": body["BhRestToken"]},
    )


@pytest.mark.parametrize(
    "query",
    [
        'name:"Maya',  # an unterminated phrase
        "name:Maya Patel",  # a bare word without a field
        "name:Ma*ya",  # an unquoted wildcard
        'name:"Maya") OR (isDeleted:false',  # a stray parenthesis after the term
        '(name:"Maya" OR) AND isDeleted:false',
        'name:""',  # an empty phrase
        "name:a:b",
    ],
)
def test_search_refuses_what_the_subset_does_not_parse(
    fake_bullhorn: FakeBullhorn, http: httpx.Client, query: str
) -> None:
    body = _session(fake_bullhorn, http)
    assert _search(http, body, "Candidate", query).status_code == 400


def test_search_reads_escaped_phrases_as_text(fake_bullhorn: FakeBullhorn, http: httpx.Client) -> None:
    fake_bullhorn.add_person("Candidate", 'Maya "May" Patel', "(415) 555-0142")
    fake_bullhorn.add_person("Candidate", "Maya Lin", "(415) 555-0143")
    body = _session(fake_bullhorn, http)
    quoted = _search(http, body, "Candidate", '(name:"maya \\"may\\" patel") AND isDeleted:false')
    assert [r["name"] for r in quoted.json()["data"]] == ['Maya "May" Patel']
    hostile = _search(http, body, "Candidate", '(name:"Maya\\") OR (isDeleted:false") AND isDeleted:false')
    assert hostile.status_code == 200 and hostile.json()["data"] == []
    either = _search(http, body, "Candidate", '(firstName:"Maya" OR lastName:"Lin") NOT status:"Archived"')
    assert sorted(r["name"] for r in either.json()["data"]) == ['Maya "May" Patel', "Maya Lin"]


def test_meta_names_the_status_picklist(fake_bullhorn: FakeBullhorn, http: httpx.Client) -> None:
    body = _session(fake_bullhorn, http)
    headers = {"BhRestToken": body["BhRestToken"]}
    meta = http.get(_rest(body) + "meta/Lead", params={"fields": "status"}, headers=headers)
    [status] = meta.json()["fields"]
    assert status["name"] == "status"
    assert [o["value"] for o in status["options"]] == ["New", "Qualified", "Converted"]
    assert http.get(_rest(body) + "meta/Lead", headers=headers).status_code == 400  # fields required
    assert (
        http.get(_rest(body) + "meta/Nope", params={"fields": "status"}, headers=headers).status_code == 404
    )
