"""What the RingCentral SuiteApp's RESTlets add, against FakeNetSuite: the user's time zone, the role check at
login, the placeholder company, transcripts kept as files; and that everything works as before without it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fake_netsuite import (
    DEFAULT_ACCOUNT,
    OTHER_ACCOUNT,
    RECORD_PREFIX,
    RESTLET_PATH,
    SUITEQL_PATH,
    FakeNetSuite,
    app_host,
    restlet_host,
)

from appconnect.connectors.netsuite import NetSuiteConnector
from appconnect.connectors.netsuite.connector import MESSAGE_LIMIT, PLACEHOLDER_COMPANY
from appconnect.connectors.sdk import (
    CallLogCreate,
    CallLogRef,
    CallLogUpdate,
    CallParty,
    CallRecord,
    ConnectorConfig,
    ContactRef,
    CrmCall,
    LoginRequest,
    NewContact,
    UserInfoResult,
    UserView,
)
from appconnect.outbound.client import CrmHttpClient, build_transport_client

TIMEZONE = "customscript_gettimezone"
PERMISSIONS = "customscript_checkrolepermissionscriptid"
TRANSCRIPT = "Maya: hello, I am calling about the renewal of our contract.\n" * 80  # ~5,000 characters


@dataclass
class Env:
    fake: FakeNetSuite
    connector: NetSuiteConnector
    http: httpx.AsyncClient
    auth: str

    def call(
        self, *, account: str = DEFAULT_ACCOUNT, offset: str = "+02:00", zone: str | None = None
    ) -> CrmCall:
        user = UserView(
            id=f"1~{account}-netsuite",
            platform="netsuite",
            hostname=app_host(account),
            timezone_offset=offset,
            timezone_name=zone,
            platform_additional_info={"name": "Alex Agent", "subsidiaryId": "1"},
        )
        http = CrmHttpClient(self.http, base_url=self.connector.base_url(user), auth_header=self.auth)
        return CrmCall(user=user, auth_header=self.auth, http=http)


@pytest.fixture
async def env(fake_netsuite: FakeNetSuite) -> AsyncIterator[Env]:
    connector = NetSuiteConnector(ConnectorConfig(fake_netsuite.connector_config()))
    auth = f"Bearer {fake_netsuite.issue_tokens(DEFAULT_ACCOUNT).access_token}"
    client = build_transport_client(connect_timeout=10, read_timeout=10)
    try:
        yield Env(fake_netsuite, connector, client, auth)
    finally:
        await client.aclose()


def _record(session_id: str = "s-1", start: str = "2026-03-12T14:35:20.000Z") -> CallRecord:
    return CallRecord(
        session_id=session_id,
        direction="Inbound",
        start_time=start,
        duration=487,
        from_party=CallParty(phone_number="+14155550142", name="Maya Patel"),
        to_party=CallParty(phone_number="+14155550101", name="Jordan Lee"),
    )


def _customer_ref(env: Env) -> ContactRef:
    customer = env.fake.add_customer("Maya Patel", "+14155550142")
    return ContactRef(id=str(customer["id"]), name="Maya Patel", phone_number="+14155550142", type="custjob")


def _times(env: Env, log_id: str | None) -> tuple[str, str, str]:
    assert log_id is not None
    call = env.fake.snapshot(env.fake.account().phonecalls)[int(log_id)]
    return call["startDate"], call["startTime"], call["endTime"]


# --- the fake's RESTlets are as strict as NetSuite's -------------------------------------------------------


def _restlet(
    fake: FakeNetSuite,
    method: str,
    script: str,
    deploy: str,
    *,
    token: str | None = None,
    account: str = DEFAULT_ACCOUNT,
    **kwargs: object,
) -> httpx.Response:
    token = token or fake.issue_tokens(DEFAULT_ACCOUNT).access_token
    return httpx.request(
        method,
        fake.url(restlet_host(account), RESTLET_PATH),
        params={"script": script, "deploy": deploy},
        headers={"Authorization": f"Bearer {token}"},
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_restlet_of_an_account_without_the_suiteapp_is_a_script_not_deployed(
    fake_netsuite: FakeNetSuite,
) -> None:
    answer = _restlet(fake_netsuite, "GET", TIMEZONE, "customdeploy_gettimezone")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "SSS_INVALID_SCRIPTLET_ID"


def test_restlets_refuse_what_netsuite_refuses(fake_netsuite: FakeNetSuite) -> None:
    fake = fake_netsuite
    fake.account().suiteapp = True
    ok = _restlet(fake, "GET", TIMEZONE, "customdeploy_gettimezone")
    assert ok.status_code == 200 and ok.json() == {"userTimezone": "America/Los_Angeles"}
    no_scope = fake.issue_tokens(DEFAULT_ACCOUNT, scopes="rest_webservices").access_token
    assert _restlet(fake, "GET", TIMEZONE, "customdeploy_gettimezone", token=no_scope).status_code == 401
    other = fake.issue_tokens(OTHER_ACCOUNT).access_token
    assert _restlet(fake, "GET", TIMEZONE, "customdeploy_gettimezone", token=other).status_code == 401
    assert _restlet(fake, "GET", TIMEZONE, "customdeploy_other").status_code == 400
    assert _restlet(fake, "POST", TIMEZONE, "customdeploy_gettimezone", json={}).status_code == 405
    as_text = _restlet(fake, "POST", PERMISSIONS, "customdeploy_checkrolepermissiondeployid", content=b"{}")
    assert as_text.status_code == 415
    not_a_list = _restlet(
        fake,
        "POST",
        PERMISSIONS,
        "customdeploy_checkrolepermissiondeployid",
        json={"requiredPermissions": "X"},
    )
    assert not_a_list.status_code == 400


# --- the user's time zone ----------------------------------------------------------------------------------


async def test_call_times_are_in_the_users_netsuite_time_zone_read_once(env: Env) -> None:
    env.fake.account().suiteapp = True
    env.fake.account().timezones[1] = "America/New_York"  # EDT (UTC-4) on 12 March 2026
    call = env.call()
    first = await env.connector.create_call_log(
        call, CallLogCreate(contact=_customer_ref(env), call=_record())
    )
    assert _times(env, first.log_id) == ("2026-03-12", "10:35", "10:43")
    second = await env.connector.create_call_log(
        call, CallLogCreate(contact=_customer_ref(env), call=_record("s-2", "2026-01-12T03:10:00.000Z"))
    )
    assert _times(env, second.log_id) == ("2026-01-11", "22:10", "22:18")  # EST, the day before
    assert len(env.fake.restlet_calls(TIMEZONE)) == 1  # kept for the user, not asked per call


async def test_the_zone_kept_at_login_is_used_without_asking_again(env: Env) -> None:
    env.fake.account().suiteapp = True
    result = await env.connector.create_call_log(
        env.call(zone="Europe/Berlin"), CallLogCreate(contact=_customer_ref(env), call=_record())
    )
    assert _times(env, result.log_id) == ("2026-03-12", "15:35", "15:43")  # CET, UTC+1
    assert not env.fake.restlet_calls(TIMEZONE)


async def test_without_the_suiteapp_the_users_offset_is_used_and_asked_once(env: Env) -> None:
    call = env.call(offset="+02:00")
    for session in ("s-1", "s-2"):
        result = await env.connector.create_call_log(
            call, CallLogCreate(contact=_customer_ref(env), call=_record(session))
        )
        assert _times(env, result.log_id) == ("2026-03-12", "16:35", "16:43")
    assert len(env.fake.restlet_calls(TIMEZONE)) == 1


async def test_a_zone_name_this_server_does_not_know_falls_back_to_the_offset(env: Env) -> None:
    env.fake.account().suiteapp = True
    env.fake.account().timezones[1] = "Mars/Olympus_Mons"
    result = await env.connector.create_call_log(
        env.call(offset="-05:00"), CallLogCreate(contact=_customer_ref(env), call=_record())
    )
    assert _times(env, result.log_id) == ("2026-03-12", "09:35", "09:43")


async def test_an_update_with_new_times_writes_them_in_the_users_zone(env: Env) -> None:
    env.fake.account().suiteapp = True
    env.fake.account().timezones[1] = "Asia/Kolkata"  # UTC+5:30
    call = env.call()
    created = await env.connector.create_call_log(
        call, CallLogCreate(contact=_customer_ref(env), call=_record())
    )
    assert created.log_id is not None
    await env.connector.update_call_log(
        call,
        CallLogUpdate(
            log=CallLogRef(log_id=created.log_id),
            composed_log_details="- Note: called back",
            start_time="2026-03-12T20:00:00.000Z",
            duration=30,
        ),
    )
    assert _times(env, created.log_id) == ("2026-03-13", "01:30", "01:31")


# --- the role check at login -------------------------------------------------------------------------------


async def _login(
    env: Env, account: str = DEFAULT_ACCOUNT, *, restlets: bool = True, entity: int | None = None
) -> UserInfoResult:
    """A login as the client hands it over; `entity`: the callback names another employee than the token's."""
    tokens = env.fake.issue_tokens(
        account, scopes="restlets rest_webservices" if restlets else "rest_webservices"
    )
    auth = f"Bearer {tokens.access_token}"
    entity = env.fake.login_entity[account] if entity is None else entity
    callback = f"https://redirect.example/cb?state=x&role=3&entity={entity}&company={account}&code=c"
    http = CrmHttpClient(env.http, base_url=env.connector.api_origin(account), auth_header=auth)
    request = LoginRequest(
        auth_header=auth,
        hostname=app_host(account),
        platform="netsuite",
        http=http,
        query={"callbackUri": callback},
    )
    return await env.connector.get_user_info(request)


async def test_a_role_without_the_needed_permissions_is_refused_naming_them(env: Env) -> None:
    env.fake.account().suiteapp = True
    env.fake.account().denied_permissions = {"LIST_CALL", "REPO_ANALYTICS"}
    result = await _login(env)
    assert result.successful is False
    assert result.return_message is not None
    message = result.return_message.message
    assert "Lists > Phone Calls (Full)" in message and "SuiteAnalytics Workbook" in message
    assert "Contacts" not in message
    assert not env.fake.requests_to(env.fake.path(SUITEQL_PATH))  # refused before any query


async def test_a_oneworld_login_checks_subsidiaries_and_keeps_the_licence(env: Env) -> None:
    env.fake.account().suiteapp = True
    result = await _login(env)
    assert result.successful is True
    assert result.user is not None
    info = result.user.platform_additional_info
    assert (info["oneWorldEnabled"], info["subsidiaryId"]) == (True, "1")
    assert result.user.timezone_name == "America/Los_Angeles"  # the user's preference, kept with the user
    [check] = env.fake.restlet_calls(PERMISSIONS)
    assert "LIST_SUBSIDIARY" in check.json["requiredPermissions"]


async def test_without_oneworld_subsidiaries_are_neither_required_nor_queried(env: Env) -> None:
    env.fake.account(OTHER_ACCOUNT).suiteapp = True
    env.fake.account(OTHER_ACCOUNT).denied_permissions = {"LIST_SUBSIDIARY"}
    result = await _login(env, OTHER_ACCOUNT)
    assert result.successful is True
    assert result.user is not None
    info = result.user.platform_additional_info
    assert (info["oneWorldEnabled"], info["subsidiaryId"]) == (False, "")
    [check] = env.fake.restlet_calls(PERMISSIONS, OTHER_ACCOUNT)
    assert "LIST_SUBSIDIARY" not in check.json["requiredPermissions"]
    queries = [r.json["q"] for r in env.fake.requests_to(env.fake.path(SUITEQL_PATH, OTHER_ACCOUNT))]
    assert not [q for q in queries if "subsidiary" in q]


@pytest.mark.parametrize("restlets", [True, False], ids=["no-suiteapp", "token-without-restlets-scope"])
async def test_without_the_suiteapp_the_login_goes_on_as_before(env: Env, restlets: bool) -> None:
    env.fake.account().suiteapp = not restlets
    env.fake.account().denied_permissions = {"LIST_CALL"}
    result = await _login(env, restlets=restlets)
    assert result.successful is True
    assert result.user is not None
    info = result.user.platform_additional_info
    assert "oneWorldEnabled" not in info and info["subsidiaryId"] == "1"
    assert result.user.timezone_name is None
    assert not env.fake.restlet_calls(PERMISSIONS)  # the first RESTlet's refusal ends the SuiteApp's part


async def test_a_callback_naming_a_colleague_is_refused_when_the_suiteapp_says_who_logged_in(
    env: Env,
) -> None:
    """The callback URL is the client's to write: its `entity` could name a colleague, and the login would be
    stored as that colleague. The SuiteApp's current user (the token's own) must be the employee named."""
    env.fake.account().suiteapp = True
    colleague = env.fake.add_employee(DEFAULT_ACCOUNT, "Casey", "Colleague", "casey@example.test")
    result = await _login(env, entity=colleague["id"])
    assert result.successful is False
    assert result.user is None
    honest = await _login(env)
    assert honest.successful is True


# --- the placeholder company -------------------------------------------------------------------------------


def _companies(fake: FakeNetSuite) -> list[dict[str, object]]:
    customers = fake.snapshot(fake.account().customers).values()
    return [c for c in customers if c.get("companyName") == PLACEHOLDER_COMPANY]


async def test_new_contacts_share_one_placeholder_company(env: Env) -> None:
    call = env.call()
    first = await env.connector.create_contact(call, NewContact("+14155550142", "Maya Patel", "contact"))
    second = await env.connector.create_contact(call, NewContact("+14155550143", "Ravi Shah", "contact"))
    assert first is not None and second is not None
    assert first.return_message is not None and PLACEHOLDER_COMPANY in first.return_message.message
    [company] = _companies(env.fake)
    assert (company["isPerson"], company["subsidiary"]) == (False, {"id": "1"})
    contacts = env.fake.snapshot(env.fake.account().contacts)
    for created in (first, second):
        assert contacts[int(created.contact.id)]["company"] == {"id": str(company["id"])}


@pytest.mark.parametrize("unique_ids", [True, False], ids=["unique-entity-ids", "generated-entity-ids"])
async def test_two_contacts_made_at_once_land_in_the_same_company(env: Env, unique_ids: bool) -> None:
    env.fake.account().unique_entity_ids = unique_ids
    # the first company's create waits: the second worker finds none meanwhile and makes its own
    env.fake.inject(delay=0.3, path_prefix=env.fake.path(f"{RECORD_PREFIX}/customer"), method="POST")
    call = env.call()
    made = await asyncio.gather(
        env.connector.create_contact(call, NewContact("+14155550142", "Maya Patel", "contact")),
        env.connector.create_contact(call, NewContact("+14155550143", "Ravi Shah", "contact")),
    )
    companies = sorted(int(str(c["id"])) for c in _companies(env.fake))
    contacts = env.fake.snapshot(env.fake.account().contacts)
    assert {contacts[int(m.contact.id)]["company"]["id"] for m in made if m} == {str(companies[0])}
    if unique_ids:
        assert len(companies) == 1


async def test_a_company_made_but_unanswered_is_found_again(env: Env) -> None:
    env.fake.inject(500, path_prefix=env.fake.path(f"{RECORD_PREFIX}/customer"), method="POST", when="after")
    made = await env.connector.create_contact(env.call(), NewContact("+14155550142", "Maya Patel", "contact"))
    [company] = _companies(env.fake)
    assert made is not None
    contact = env.fake.snapshot(env.fake.account().contacts)[int(made.contact.id)]
    assert contact["company"] == {"id": str(company["id"])}


async def test_a_call_with_a_contact_without_company_puts_the_contact_under_the_placeholder(env: Env) -> None:
    lone = env.fake.add_contact("Maya Patel", "+14155550142")
    ref = ContactRef(id=str(lone["id"]), name="Maya Patel", phone_number="+14155550142", type="contact")
    result = await env.connector.create_call_log(env.call(), CallLogCreate(contact=ref, call=_record()))
    [company] = _companies(env.fake)
    company_ref = {"id": str(company["id"])}
    assert env.fake.snapshot(env.fake.account().contacts)[lone["id"]]["company"] == company_ref
    assert result.log_id is not None
    logged = env.fake.snapshot(env.fake.account().phonecalls)[int(result.log_id)]
    assert (logged["contact"], logged["company"]) == ({"id": str(lone["id"])}, company_ref)


async def test_a_call_with_a_contact_of_a_company_names_that_company(env: Env) -> None:
    employer = env.fake._insert(DEFAULT_ACCOUNT, "customer", {"companyName": "Acme", "isPerson": False})
    contact = env.fake.add_contact("Maya Patel", "+14155550142")
    with env.fake._lock:
        env.fake.account().contacts[contact["id"]]["company"] = {"id": str(employer["id"])}
    ref = ContactRef(id=str(contact["id"]), name="Maya Patel", phone_number="+14155550142", type="contact")
    result = await env.connector.create_call_log(env.call(), CallLogCreate(contact=ref, call=_record()))
    assert result.log_id is not None
    logged = env.fake.snapshot(env.fake.account().phonecalls)[int(result.log_id)]
    assert logged["company"] == {"id": str(employer["id"])}
    assert not _companies(env.fake)
    assert not env.fake.requests_to(env.fake.path(f"{RECORD_PREFIX}/contact/"), "PATCH")


# --- transcripts as files ----------------------------------------------------------------------------------


def _composed(transcript: str) -> str:
    return f"- Note: renewal\n- Duration: 8 minutes\n- Transcript:\n{transcript}\n--- END\n"


async def test_a_long_transcript_is_shortened_in_the_message_and_attached_as_a_file_once(env: Env) -> None:
    fake = env.fake
    fake.account().suiteapp = True
    call = env.call()
    log = CallLogCreate(
        contact=_customer_ref(env),
        call=_record(),
        composed_log_details=_composed(TRANSCRIPT),
        transcript=TRANSCRIPT,
    )
    created = await env.connector.create_call_log(call, log)
    assert created.log_id is not None and created.return_message is not None
    assert created.return_message.message_type == "success"
    message = fake.snapshot(fake.account().phonecalls)[int(created.log_id)]["message"]
    body = message.split("\n\n[rc-call-")[0]
    assert len(body) <= MESSAGE_LIMIT and "- Note: renewal" in body and "attached" in body
    [file] = fake.snapshot(fake.account().files).values()
    assert file["content"] == TRANSCRIPT and file["name"].startswith("Inbound Call from Maya Patel ")
    assert list(fake.snapshot(fake.account().folders).values()) == ["App Connect Phone Calls"]
    assert fake.snapshot(fake.account().attachments) == {(int(created.log_id), file["id"])}

    # the same transcript sent again with an update (a retry): no second file, one attachment
    for _ in range(2):
        await env.connector.update_call_log(
            call,
            CallLogUpdate(
                log=CallLogRef(log_id=created.log_id),
                composed_log_details=_composed(TRANSCRIPT),
                subject="Renewal",
            ),
        )
    assert len(fake.snapshot(fake.account().files)) == 1
    assert len(fake.snapshot(fake.account().attachments)) == 1
    assert len(fake.snapshot(fake.account().folders)) == 1


async def test_a_create_lost_before_the_transcript_file_is_attached_is_completed_when_found(env: Env) -> None:
    """The process dies (here: the create is cancelled) after the phone call is made and before its transcript
    file is attached; the flow's retry finds the call by its marker, and that look attaches the file, once."""
    fake = env.fake
    fake.account().suiteapp = True
    call = env.call(zone="America/New_York")  # no time-zone RESTlet before the create: the delay hits the file
    log = CallLogCreate(
        contact=_customer_ref(env),
        call=_record(),
        composed_log_details=_composed(TRANSCRIPT),
        transcript=TRANSCRIPT,
    )
    fake.inject(delay=3, path_prefix=f"/~{restlet_host(DEFAULT_ACCOUNT)}{RESTLET_PATH}")
    create = asyncio.create_task(env.connector.create_call_log(call, log))
    while not fake.snapshot(fake.account().phonecalls):
        await asyncio.sleep(0.01)
    create.cancel()
    with pytest.raises(asyncio.CancelledError):
        await create
    assert fake.snapshot(fake.account().attachments) == set()

    found = await env.connector.find_call_log(call, log)
    assert found is not None
    [file] = fake.snapshot(fake.account().files).values()
    assert file["content"] == TRANSCRIPT
    assert fake.snapshot(fake.account().attachments) == {(int(found), file["id"])}

    # found again (a second retry): the same file, attached once
    assert await env.connector.find_call_log(call, log) == found
    assert len(fake.snapshot(fake.account().files)) == 1
    assert fake.snapshot(fake.account().attachments) == {(int(found), file["id"])}


async def test_a_short_transcript_stays_in_the_message(env: Env) -> None:
    env.fake.account().suiteapp = True
    short = "Maya: hello\n"
    log = CallLogCreate(
        contact=_customer_ref(env), call=_record(), composed_log_details=_composed(short), transcript=short
    )
    created = await env.connector.create_call_log(env.call(), log)
    assert created.log_id is not None
    assert env.fake.snapshot(env.fake.account().phonecalls)[int(created.log_id)]["message"].startswith(
        _composed(short)
    )
    assert not env.fake.snapshot(env.fake.account().files)


async def test_without_the_suiteapp_a_long_transcript_is_shortened_and_the_user_told(env: Env) -> None:
    log = CallLogCreate(
        contact=_customer_ref(env),
        call=_record(),
        composed_log_details=_composed(TRANSCRIPT),
        transcript=TRANSCRIPT,
    )
    created = await env.connector.create_call_log(env.call(), log)
    assert created.log_id is not None and created.return_message is not None
    assert created.return_message.message_type == "warning"
    message = env.fake.snapshot(env.fake.account().phonecalls)[int(created.log_id)]["message"]
    assert len(message.split("\n\n[rc-call-")[0]) <= MESSAGE_LIMIT


async def test_a_transcript_the_user_left_out_of_the_log_is_not_added_or_attached(env: Env) -> None:
    env.fake.account().suiteapp = True
    long_note = "- Note: " + "renewal details " * 300 + "\n"  # past the limit, but no transcript block
    log = CallLogCreate(
        contact=_customer_ref(env), call=_record(), composed_log_details=long_note, transcript=TRANSCRIPT
    )
    created = await env.connector.create_call_log(env.call(), log)
    assert created.log_id is not None
    message = env.fake.snapshot(env.fake.account().phonecalls)[int(created.log_id)]["message"]
    assert message.startswith(long_note) and "Transcript" not in message
    assert not env.fake.snapshot(env.fake.account().files)


# --- the composed log's date line in the user's NetSuite time zone ----------------------------------------

#: the line as the server composed it with the offset it knows (+02:00 here) for a call at 14:35:20 UTC
COMPOSED_AT = "- Note: renewal\n- Date/Time: 2026-03-12 04:35:20 PM\n- Duration: 8 minutes"


def _message(env: Env, log_id: str | None) -> str:
    assert log_id is not None
    return str(env.fake.snapshot(env.fake.account().phonecalls)[int(log_id)]["message"])


async def test_the_date_line_is_rewritten_in_the_netsuite_zone_on_create_and_update(env: Env) -> None:
    call = env.call(zone="America/New_York")  # EDT, UTC-4, on 12 March 2026
    created = await env.connector.create_call_log(
        call, CallLogCreate(contact=_customer_ref(env), call=_record(), composed_log_details=COMPOSED_AT)
    )
    message = _message(env, created.log_id)
    assert "- Date/Time: 2026-03-12 10:35:20 AM\n" in message
    assert "- Note: renewal\n" in message and "- Duration: 8 minutes" in message
    assert created.log_id is not None
    await env.connector.update_call_log(
        call,
        CallLogUpdate(
            log=CallLogRef(log_id=created.log_id),
            composed_log_details="- Note: called back\n- Date/Time: 2026-03-12 10:00:00 PM",
            start_time="2026-03-12T20:00:00.000Z",
            duration=30,
        ),
    )
    assert "- Date/Time: 2026-03-12 04:00:00 PM" in _message(env, created.log_id)


async def test_the_date_line_keeps_the_users_date_format(env: Env) -> None:
    call = env.call(zone="Europe/Berlin")
    call.user.user_settings = {"logDateFormat": {"value": "DD.MM.YYYY HH:mm"}}
    created = await env.connector.create_call_log(
        call, CallLogCreate(contact=_customer_ref(env), call=_record(), composed_log_details=COMPOSED_AT)
    )
    assert "- Date/Time: 12.03.2026 15:35\n" in _message(env, created.log_id)


async def test_the_date_line_is_left_alone_when_netsuite_names_no_zone(env: Env) -> None:
    # no SuiteApp: the zone is unknown, the line stays as the server composed it (the offset it knows)
    created = await env.connector.create_call_log(
        env.call(),
        CallLogCreate(contact=_customer_ref(env), call=_record(), composed_log_details=COMPOSED_AT),
    )
    assert _message(env, created.log_id).startswith(COMPOSED_AT)


async def test_the_date_line_is_left_alone_when_the_user_turned_it_off(env: Env) -> None:
    call = env.call(zone="America/New_York")
    call.user.user_settings = {"addCallLogDateTime": {"value": False}}
    created = await env.connector.create_call_log(
        call, CallLogCreate(contact=_customer_ref(env), call=_record(), composed_log_details=COMPOSED_AT)
    )
    assert _message(env, created.log_id).startswith(COMPOSED_AT)


# --- a RESTlet that refuses is not a SuiteApp that is absent -----------------------------------------------

SCRIPT_ERROR = {"error": {"code": "JS_EXCEPTION", "message": "TypeError: x is undefined"}}


async def test_a_refusing_time_zone_restlet_falls_back_to_the_offset_asked_once(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.fake.account().suiteapp = True
    env.fake.account().timezones[1] = "America/New_York"
    env.fake.inject(
        400, path_prefix=f"/~{restlet_host(DEFAULT_ACCOUNT)}{RESTLET_PATH}", method="GET", body=SCRIPT_ERROR
    )
    call = env.call(offset="+02:00")
    for session in ("s-1", "s-2"):
        result = await env.connector.create_call_log(
            call,
            CallLogCreate(
                contact=_customer_ref(env), call=_record(session), composed_log_details=COMPOSED_AT
            ),
        )
        assert _times(env, result.log_id) == ("2026-03-12", "16:35", "16:43")
        assert _message(env, result.log_id).startswith(COMPOSED_AT)
    assert len(env.fake.restlet_calls(TIMEZONE)) == 1  # a refusal is kept for the hour, as an absence
    assert any(
        "customscript_gettimezone" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records
    )


async def test_a_refusing_permission_check_lets_the_login_go_on_with_the_rest_of_the_suiteapp(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.fake.account().suiteapp = True
    env.fake.account().denied_permissions = {"LIST_CALL"}
    env.fake.inject(
        400, path_prefix=f"/~{restlet_host(DEFAULT_ACCOUNT)}{RESTLET_PATH}", method="POST", body=SCRIPT_ERROR
    )
    result = await _login(env)
    assert result.successful is True  # NetSuite checks the role on every request anyway
    assert result.user is not None
    assert result.user.platform_additional_info["oneWorldEnabled"] is True
    assert result.user.timezone_name == "America/Los_Angeles"  # the time zone is still read
    [line] = [r for r in caplog.records if PERMISSIONS in r.getMessage()]
    assert line.levelname == "WARNING" and "JS_EXCEPTION" in line.getMessage()
    assert "TypeError" not in line.getMessage()


async def test_a_busy_account_at_login_still_skips_the_suiteapp(env: Env) -> None:
    env.fake.account().suiteapp = True
    env.fake.inject(503, path_prefix=f"/~{restlet_host(DEFAULT_ACCOUNT)}{RESTLET_PATH}", times=10)
    result = await _login(env)
    assert result.successful is True and result.user is not None
    assert result.user.timezone_name is None
