"""FakeNetSuite is as strict as NetSuite where the connector could go wrong: checked over real HTTP."""

from __future__ import annotations

import threading

import httpx
import pytest
from fake_netsuite import (
    CLIENT_ID,
    DEFAULT_ACCOUNT,
    OTHER_ACCOUNT,
    RECORD_PREFIX,
    RESTLET_PATH,
    SUITEQL_PATH,
    FakeNetSuite,
    api_host,
    app_host,
    restlet_host,
)


def _post(
    fake: FakeNetSuite,
    path: str,
    body: object,
    *,
    account: str = DEFAULT_ACCOUNT,
    token_account: str = DEFAULT_ACCOUNT,
    **params: str,
) -> httpx.Response:
    token = fake.issue_tokens(token_account).access_token
    return httpx.post(
        fake.url(api_host(account), path),
        json=body,
        params=params,
        headers={"Authorization": f"Bearer {token}", "Prefer": "transient"},
    )


def _code(answer: httpx.Response) -> str:
    return str(answer.json()["o:errorDetails"][0]["o:errorCode"])


def test_suiteql_pages_at_most_a_thousand_rows(fake_netsuite: FakeNetSuite) -> None:
    for n in range(1200):
        fake_netsuite.add_contact(f"P{n} Person", f"+1415555{n:04d}")
    first = _post(
        fake_netsuite, SUITEQL_PATH, {"q": "SELECT id FROM contact"}, limit="1000", offset="0"
    ).json()
    second = _post(
        fake_netsuite, SUITEQL_PATH, {"q": "SELECT id FROM contact"}, limit="1000", offset="1000"
    ).json()
    assert (first["count"], first["hasMore"], second["count"], second["hasMore"]) == (1000, True, 200, False)
    assert first["items"][0] == {"links": [], "id": "2"}  # strings, lower-case (1 is the employee)
    too_many = _post(fake_netsuite, SUITEQL_PATH, {"q": "SELECT id FROM contact"}, limit="1001")
    assert too_many.status_code == 400


def test_suiteql_refuses_unknown_columns_and_leaves_nulls_out(fake_netsuite: FakeNetSuite) -> None:
    fake_netsuite.add_contact("Maya Patel", "(415) 555-0142")
    bad = _post(fake_netsuite, SUITEQL_PATH, {"q": "SELECT id, nickname FROM contact"})
    assert bad.status_code == 400 and _code(bad) == "INVALID_PARAMETER"
    rows = _post(
        fake_netsuite,
        SUITEQL_PATH,
        {
            "q": "SELECT id, phone, mobilephone FROM contact WHERE REGEXP_REPLACE(phone, '[^0-9]', '') LIKE '%4155550142%'"
        },
    ).json()["items"]
    assert rows == [{"links": [], "id": "2", "phone": "(415) 555-0142"}]


def test_a_create_answers_204_with_the_id_only_in_location(fake_netsuite: FakeNetSuite) -> None:
    answer = _post(fake_netsuite, f"{RECORD_PREFIX}/contact", {"firstName": "Maya", "lastName": "Patel"})
    assert answer.status_code == 204 and answer.content == b""
    assert answer.headers["location"].endswith(f"/~{api_host(DEFAULT_ACCOUNT)}{RECORD_PREFIX}/contact/2")


def test_records_refuse_unknown_fields_and_dangling_references(fake_netsuite: FakeNetSuite) -> None:
    unknown = _post(fake_netsuite, f"{RECORD_PREFIX}/contact", {"lastName": "Patel", "nickname": "M"})
    assert unknown.status_code == 400
    dangling = _post(fake_netsuite, f"{RECORD_PREFIX}/phonecall", {"title": "Call", "contact": {"id": "999"}})
    assert dangling.status_code == 400


def test_a_token_works_on_its_own_account_only(fake_netsuite: FakeNetSuite) -> None:
    answer = _post(fake_netsuite, SUITEQL_PATH, {"q": "SELECT id FROM contact"}, account=OTHER_ACCOUNT)
    assert answer.status_code == 401


def test_the_consent_screen_wants_a_long_state(fake_netsuite: FakeNetSuite) -> None:
    params = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": fake_netsuite.redirect_uri,
        "scope": "rest_webservices",
        "state": "platform=netsuite",
    }
    url = fake_netsuite.url(app_host(DEFAULT_ACCOUNT), "/app/login/oauth2/authorize.nl")
    assert httpx.get(url, params=params).status_code == 400
    answer = httpx.get(url, params={**params, "state": "platform=netsuite&fillerString=x"})
    assert answer.status_code == 302
    assert f"company={DEFAULT_ACCOUNT}" in answer.headers["location"]


@pytest.mark.parametrize("limit", [1])
def test_one_concurrency_pool_per_account(fake_netsuite: FakeNetSuite, limit: int) -> None:
    """A request over the account's concurrent limit is a 429 CONCURRENCY_LIMIT_EXCEEDED; another account's
    requests are not counted against it."""
    fake_netsuite.concurrency_limit = limit
    fake_netsuite.inject(delay=1.0, path_prefix=fake_netsuite.path(SUITEQL_PATH), method="POST")
    slow: list[httpx.Response] = []
    worker = threading.Thread(
        target=lambda: slow.append(_post(fake_netsuite, SUITEQL_PATH, {"q": "SELECT id FROM contact"}))
    )
    worker.start()
    try:
        for _ in range(100):
            if fake_netsuite.account().in_flight:
                break
            threading.Event().wait(0.02)
        refused = _post(fake_netsuite, SUITEQL_PATH, {"q": "SELECT id FROM contact"})
        other = _post(
            fake_netsuite,
            SUITEQL_PATH,
            {"q": "SELECT id FROM contact"},
            account=OTHER_ACCOUNT,
            token_account=OTHER_ACCOUNT,
        )
    finally:
        worker.join()
    assert refused.status_code == 429 and _code(refused) == "CONCURRENCY_LIMIT_EXCEEDED"
    assert other.status_code == 200
    assert slow[0].status_code == 200


# --- transactions and the createusernotes RESTlet ------------------------------------------------------------


def _restlet(
    fake: FakeNetSuite, method: str, body: object, *, scopes: str = "restlets rest_webservices", **params: str
) -> httpx.Response:
    fake.account().suiteapp = True
    token = fake.issue_tokens(DEFAULT_ACCOUNT, scopes=scopes).access_token
    query = {"script": "customscript_createusernotes", "deploy": "customdeploy_createusernotes", **params}
    return httpx.request(
        method,
        fake.url(restlet_host(DEFAULT_ACCOUNT), RESTLET_PATH),
        json=body,
        params=query,
        headers={"Authorization": f"Bearer {token}"},
    )


def test_transactions_order_by_their_creation_day(fake_netsuite: FakeNetSuite) -> None:
    customer = fake_netsuite.add_customer("Acme Corp", "+12125550100")["id"]
    for day in ("9/30/2026", "11/2/2026", "10/15/2026"):
        fake_netsuite.add_transaction("salesorder", customer, day, created=day)
    fake_netsuite.add_transaction("opportunity", customer, "Renewal")
    query = (
        f"SELECT id, trandisplayname FROM transaction WHERE entity = {customer} AND type = 'SalesOrd' "
        "ORDER BY createddate DESC"
    )
    rows = _post(fake_netsuite, SUITEQL_PATH, {"q": query}).json()["items"]
    assert [r["trandisplayname"].rsplit(" ", 1)[1] for r in rows] == ["11/2/2026", "10/15/2026", "9/30/2026"]
    joined = _post(
        fake_netsuite,
        SUITEQL_PATH,
        {"q": "SELECT contact.id FROM contact LEFT JOIN customer ON contact.company = customer.id"},
    )
    assert joined.status_code == 400  # a query the fake does not understand is refused, never guessed at


def test_a_phone_calls_transaction_must_exist_and_be_of_its_type(fake_netsuite: FakeNetSuite) -> None:
    customer = fake_netsuite.add_customer("Acme Corp", "+12125550100")["id"]
    order = fake_netsuite.add_transaction("salesorder", customer, "Widgets")["id"]
    call = {"title": "Call", "company": {"id": str(customer)}}
    path = f"{RECORD_PREFIX}/phonecall"
    wrong_type = _post(fake_netsuite, path, {**call, "transaction": {"id": order, "type": "opportunity"}})
    missing = _post(fake_netsuite, path, {**call, "transaction": {"id": order + 50, "type": "salesorder"}})
    assert (wrong_type.status_code, missing.status_code) == (400, 400)
    assert (
        _post(fake_netsuite, path, {**call, "transaction": {"id": order, "type": "salesorder"}}).status_code
        == 204
    )


def test_the_user_notes_restlet_creates_then_updates(fake_netsuite: FakeNetSuite) -> None:
    customer = fake_netsuite.add_customer("Acme Corp", "+12125550100")["id"]
    order = fake_netsuite.add_transaction("salesorder", customer, "Widgets")["id"]
    created = _restlet(fake_netsuite, "POST", {"salesOrderId": order, "noteTitle": "T", "noteText": "one"})
    assert created.status_code == 200 and created.json()["success"] is True
    note_id = created.json()["noteId"]
    updated = _restlet(fake_netsuite, "PUT", {"noteId": note_id, "noteTitle": "T", "noteText": "two"})
    assert updated.json()["success"] is True
    assert [(n["id"], n["transaction"], n["note"]) for n in fake_netsuite.user_notes()] == [
        (note_id, order, "two")
    ]
    nowhere = _restlet(fake_netsuite, "POST", {"salesOrderId": 999999, "noteTitle": "T", "noteText": "x"})
    assert nowhere.json()["success"] is False


def test_restlets_want_the_restlets_scope_and_a_deployed_script(fake_netsuite: FakeNetSuite) -> None:
    body = {"salesOrderId": 1, "noteTitle": "T", "noteText": "x"}
    assert _restlet(fake_netsuite, "POST", body, scopes="rest_webservices").status_code == 401
    unknown = _restlet(fake_netsuite, "POST", body, script="customscript_other")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "SSS_INVALID_SCRIPTLET_ID"
    fake_netsuite.account().suiteapp = False  # no SuiteApp: createusernotes is not deployed either
    token = fake_netsuite.issue_tokens(DEFAULT_ACCOUNT).access_token
    undeployed = httpx.post(
        fake_netsuite.url(restlet_host(DEFAULT_ACCOUNT), RESTLET_PATH),
        json=body,
        params={"script": "customscript_createusernotes", "deploy": "customdeploy_createusernotes"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert undeployed.status_code == 400 and undeployed.json()["error"]["code"] == "SSS_INVALID_SCRIPTLET_ID"
    fake_netsuite.account().suiteapp = True
    token = fake_netsuite.issue_tokens(DEFAULT_ACCOUNT, scopes="restlets").access_token
    rest = httpx.post(
        fake_netsuite.url(api_host(DEFAULT_ACCOUNT), SUITEQL_PATH),
        json={"q": "SELECT id FROM contact"},
        headers={"Authorization": f"Bearer {token}", "Prefer": "transient"},
    )
    assert rest.status_code == 401  # a RESTlet-only token is no REST web services token
    as_text = httpx.post(
        fake_netsuite.url(restlet_host(DEFAULT_ACCOUNT), RESTLET_PATH),
        content=b"salesOrderId=1",
        params={"script": "customscript_createusernotes", "deploy": "customdeploy_createusernotes"},
        headers={
            "Authorization": f"Bearer {fake_netsuite.issue_tokens(DEFAULT_ACCOUNT).access_token}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert as_text.status_code == 415
