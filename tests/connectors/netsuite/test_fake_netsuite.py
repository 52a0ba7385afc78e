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
    SUITEQL_PATH,
    FakeNetSuite,
    api_host,
    app_host,
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
