"""The reference's proxy format, feature by feature, over loopback: `proxysample.json` is our own configuration
written the way the reference's sample is (blank `meta.name` and `baseUrl`, Basic auth of a template, a secret
header, `type` in every mapping, `""` item paths meaning the default), declaring every operation the reference's
proxy connector dispatches, run against the strict Ledger CRM fake. The smaller configurations below have the
shapes the reference's own tests accept: no `meta`, no `responseMapping`, no `url`, no `idPath`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from appconnect.cli import main
from appconnect.connectors.declarative import ConfigError, connector_class, load_file
from appconnect.connectors.declarative.connector import DeclarativeConnector
from appconnect.connectors.declarative.engine import as_text, get_by_path, render_string
from appconnect.connectors.registry import ConnectorRegistry
from appconnect.connectors.sdk import (
    INTERFACE_METHODS,
    CallLogCreate,
    CallLogRef,
    CallLogUpdate,
    CallParty,
    CallRecord,
    ConnectorConfig,
    ContactLookup,
    ContactRef,
    CrmCall,
    DispositionUpdate,
    LoginRequest,
    Message,
    MessageLogCreate,
    MessageLogUpdate,
    NewContact,
    RingSense,
    UserView,
    implements,
)
from appconnect.outbound.client import CrmHttpClient, build_transport_client
from tests.connectors.declarative.fake_ledger_crm import FakeLedgerCrm

SAMPLE = Path(__file__).with_name("proxysample.json")
PHONE = "+14155550142"

#: every interface the reference's proxy connector (packages/core/connector/proxy/index.ts) runs an operation for
REFERENCE_OPERATIONS = {
    "getUserInfo",
    "findContact",
    "findContactWithName",
    "createContact",
    "createCallLog",
    "getCallLog",
    "updateCallLog",
    "upsertCallDisposition",
    "createMessageLog",
    "updateMessageLog",
    "getUserList",
    "getLicenseStatus",
    "unAuthorize",
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLedgerCrm]:
    with FakeLedgerCrm() as crm:
        yield crm


def _connector(config: dict[str, Any], fake: FakeLedgerCrm, **settings: str) -> DeclarativeConnector:
    cls = connector_class(config)
    return cls(ConnectorConfig({"base_url": fake.base_url, "secret_key": fake.secret, **settings}))


def _header(connector: DeclarativeConnector, key: str) -> str:
    return "Basic " + connector.basic_auth(key)


@pytest.fixture
async def session(fake: FakeLedgerCrm) -> AsyncIterator[tuple[DeclarativeConnector, CrmCall]]:
    fake.reset()
    connector = _connector(load_file(SAMPLE), fake)
    transport = build_transport_client(connect_timeout=2, read_timeout=5)
    header = _header(connector, fake.default_key)
    user = UserView(id="dana.k-proxysample", platform="proxysample", hostname="")
    try:
        yield (
            connector,
            CrmCall(user, header, CrmHttpClient(transport, base_url=fake.base_url, auth_header=header)),
        )
    finally:
        await transport.aclose()


def _write(tmp_path: Path, name: str, config: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


# --- loading -----------------------------------------------------------------------------------------------


def test_a_blank_name_takes_the_files_name_and_every_reference_operation_is_offered() -> None:
    config = load_file(SAMPLE)
    cls = connector_class(config)
    connector = cls(ConnectorConfig())
    offered = {name for name, method in INTERFACE_METHODS.items() if implements(connector, method)}
    offered |= {"getLicenseStatus"} if implements(connector, "get_license_status") else set()
    assert cls.platform == "proxysample" and cls.log_format == "text/plain"
    assert offered == REFERENCE_OPERATIONS
    assert connector.manifest_entry()["displayName"] == "proxysample"


def test_the_server_serves_the_file_unchanged_under_its_files_name() -> None:
    registry = ConnectorRegistry.discover(environ={"APPCONNECT_DECLARATIVE_CONNECTORS": str(SAMPLE)})
    assert "proxysample" in registry.platforms()
    manifest = registry.manifest(server_url="http://127.0.0.1:1", version="1")
    assert manifest["platforms"]["proxysample"]["auth"]["type"] == "apiKey"


def test_a_blank_name_in_a_file_whose_name_is_no_platform_name_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "my-crm.json", {"meta": {"name": ""}, "operations": {}})
    with pytest.raises(ConfigError, match=r"^my-crm\.json: meta\.name: blank, and the file's name is not"):
        load_file(path)


def test_the_reference_leaves_out_meta_operations_mappings_and_urls(tmp_path: Path) -> None:
    bare = {
        "operations": {
            "getUserInfo": {},
            "findContact": {"url": "/people"},
            "createContact": {"method": "post", "url": "/people", "responseMapping": {}},
            "getUserList": {"url": "/staff"},
        }
    }
    config = load_file(_write(tmp_path, "bare.json", bare))
    assert config["meta"]["name"] == "bare"
    assert load_file(_write(tmp_path, "empty.json", {}))["operations"] == {}


def test_oauth_endpoints_may_come_from_the_deployment(fake: FakeLedgerCrm, tmp_path: Path) -> None:
    """The reference keeps the sign-in URL in its console's manifest, not the configuration."""
    path = _write(tmp_path, "oauthy.json", {"auth": {"type": "oauth", "clientId": "c-1"}, "operations": {}})
    connector = _connector(
        load_file(path),
        fake,
        auth_url="https://id.ledger.example/authorize",
        token_url="https://id.ledger.example/t",
    )
    assert connector.manifest_entry()["auth"]["oauth"]["authUrl"] == "https://id.ledger.example/authorize"
    info = connector.oauth_info()
    assert info.access_token_uri == "https://id.ledger.example/t" and info.client_id == "c-1"


# --- every operation of the sample, over loopback ------------------------------------------------------------


def test_check_says_what_the_file_leaves_to_the_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PROXYSAMPLE_BASE_URL", raising=False)
    assert main(["connector", "check", str(SAMPLE)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "note: requestDefaults.baseUrl is blank: set PROXYSAMPLE_BASE_URL (or pass --base-url)"
    ]
    path = _write(tmp_path, "oauthy.json", {"auth": {"type": "oauth", "tokenUrl": "https://x.example/t"}})
    monkeypatch.setenv("OAUTHY_BASE_URL", "https://api.x.example")
    assert main(["connector", "check", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "note: auth.authUrl is missing: set OAUTHY_AUTH_URL (OAuth cannot work without it)"
    ]


def test_check_tries_the_sample_with_the_platforms_settings(
    fake: FakeLedgerCrm, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file leaves the base URL and the secret to the deployment: the check reads them as the server does."""
    fake.reset()
    fake.add_person("Ari Vance", PHONE)
    monkeypatch.setenv("PROXYSAMPLE_SECRET_KEY", fake.secret)
    monkeypatch.setenv("PROXYSAMPLE_BASE_URL", fake.base_url)
    assert main(["connector", "check", str(SAMPLE), "--api-key", fake.default_key, "--phone", PHONE]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "login: ok",
        "lookup: 1 contact(s)",
        "call log: created (an id)",
        "get call log: ok",
    ]


async def test_login_maps_id_name_timezone_message_and_kept_values(fake: FakeLedgerCrm) -> None:
    fake.reset()
    connector = _connector(load_file(SAMPLE), fake)
    transport = build_transport_client(connect_timeout=2, read_timeout=5)
    header = _header(connector, fake.default_key)
    try:
        result = await connector.get_user_info(
            LoginRequest(
                auth_header=header,
                hostname="",
                platform="proxysample",
                http=CrmHttpClient(transport, base_url=fake.base_url, auth_header=header),
                api_key=fake.default_key,
                additional_info={"password": "never kept", "branch": "north"},
            )
        )
    finally:
        await transport.aclose()
    assert result.successful and result.user is not None
    assert (result.user.id, result.user.name, result.user.timezone_name) == (
        "dana.k-proxysample",
        "Dana Kim",
        "Europe/Berlin",
    )
    assert result.user.platform_additional_info == {
        "branch": "north",
        "account": {"login": "dana.k", "display": "Dana Kim", "tz": "Europe/Berlin"},
        "region": "eu",
    }
    assert result.return_message is not None and result.return_message.message == "Welcome back to Ledger"
    # the fake took it: `Basic base64(<key>)` of the credential template, the secret and Accept of the defaults
    [sent] = fake.requests_to("/session", "GET")
    assert sent.auth_scheme == "Basic" and sent.headers["x-secret-key"] == fake.secret


async def test_find_contact_renders_parsed_number_and_reads_blank_paths_as_defaults(
    fake: FakeLedgerCrm, session: tuple[DeclarativeConnector, CrmCall]
) -> None:
    connector, call = session
    person = fake.add_person("Ari Vance", PHONE, "Lead")
    matches = await connector.find_contact(call, ContactLookup(phone_number=PHONE))
    [found] = [c for c in matches.contacts if not c.is_new_contact]
    assert (found.id, found.name, found.type, found.phone) == (person["pid"], "Ari Vance", "Lead", PHONE)
    assert found.created_date == "2026-02-01T08:30:00Z" and found.additional_info == {"owner": "dana.k"}
    [sent] = fake.requests_to("/people", "GET")
    assert "country=US" in sent.raw_query and "tel=%2B14155550142" in sent.raw_query


async def test_name_search_reads_a_bare_list_and_sends_list_and_object_queries_as_axios_does(
    fake: FakeLedgerCrm, session: tuple[DeclarativeConnector, CrmCall]
) -> None:
    connector, call = session
    person = fake.add_person("Bo Lindqvist", "+14155550143", org="Fjord AB")
    matches = await connector.find_contact_with_name(call, "lindq")
    assert [(c.id, c.company, c.type) for c in matches.contacts] == [(person["pid"], "Fjord AB", "Contact")]
    [sent] = fake.requests_to("/people/search", "GET")
    assert "fields%5B%5D=pid&fields%5B%5D=full_name&fields%5B%5D=org" in sent.raw_query
    assert "page%5Bsize%5D=20&page%5Bsort%5D%5B0%5D=full_name" in sent.raw_query


async def test_create_contact_maps_the_created_record(
    fake: FakeLedgerCrm, session: tuple[DeclarativeConnector, CrmCall]
) -> None:
    connector, call = session
    created = await connector.create_contact(call, NewContact(PHONE, "Cleo Park", "Lead"))
    assert created is not None
    assert (created.contact.name, created.contact.type) == ("Cleo Park", "Lead")
    assert fake.people[created.contact.id]["phone"] == PHONE


def _call_log(contact_id: str) -> CallLogCreate:
    return CallLogCreate(
        contact=ContactRef(id=contact_id, phone_number=PHONE, name="Ari Vance"),
        call=CallRecord(
            session_id="s-100",
            direction="Inbound",
            start_time="2026-03-02T10:00:00.000Z",
            duration=95,
            result="Call connected",
            from_party=CallParty(phone_number=PHONE),
            to_party=CallParty(phone_number="+14155550100"),
            legs=[{"legType": "Accept"}, {"legType": "FxS"}],
        ),
        note="Asked for a quote",
        composed_log_details="- Note: Asked for a quote\n- Duration: 1 minute 35 seconds",
        ring_sense=RingSense(summary="Customer wants a quote"),
        from_server_side_logging=True,
    )


async def test_call_log_create_read_update_and_disposition(
    fake: FakeLedgerCrm, session: tuple[DeclarativeConnector, CrmCall]
) -> None:
    connector, call = session
    person = fake.add_person("Ari Vance", PHONE)
    created = await connector.create_call_log(call, _call_log(person["pid"]))
    assert created.log_id is not None
    entry = fake.entry(created.log_id)
    assert entry["title"] == "Inbound Call from Ari Vance"
    assert (entry["from"], entry["until"]) == ("2026-03-02T10:00:00Z", "2026-03-02T10:01:35Z")
    # one template alone keeps the value's type: a number, a list's length; lists in the body stay lists
    assert (entry["seconds"], entry["legs"], entry["kind_id"]) == (95, 2, 3)
    assert entry["tags"] == ["phone", "Inbound"] and entry["links"] == [{"person": person["pid"]}]
    assert (entry["automatic"], entry["summary"]) == (
        True,
        "Customer wants a quote",
    )  # isFromSSCL, ringSense*
    fake.entries[int(created.log_id)]["memo"] = "memo kept by the CRM"

    fetched = await connector.get_call_log(call, CallLogRef(created.log_id, person["pid"]))
    assert (fetched.info.subject, fetched.info.note) == (
        "Inbound Call from Ari Vance",
        "memo kept by the CRM",
    )
    assert fetched.info.full_body is not None and "Asked for a quote" in fetched.info.full_body
    assert fetched.info.full_log_response == {"entry": fake.entry(created.log_id)}

    await connector.update_call_log(
        call,
        CallLogUpdate(
            log=CallLogRef(created.log_id, person["pid"]),
            composed_log_details="- Note: Sent the quote",
            subject="Quote call",
            start_time="2026-03-02T10:00:00.000Z",
            duration=120,
        ),
    )
    entry = fake.entry(created.log_id)
    assert (entry["title"], entry["text"]) == ("Quote call", "- Note: Sent the quote")
    assert entry["until"] == "2026-03-02T10:02:00Z"

    result = await connector.upsert_call_disposition(
        call, DispositionUpdate(CallLogRef(created.log_id, person["pid"]), {"outcome": "Interested"})
    )
    assert result.log_id == created.log_id and fake.entry(created.log_id)["outcome"] == "Interested"


def _message(text: str) -> Message:
    return Message(
        id="m-1",
        direction="Outbound",
        subject=text,
        creation_time="2026-03-02T11:00:00.000Z",
        from_party=CallParty(phone_number="+14155550100"),
    )


async def test_message_log_create_and_update(
    fake: FakeLedgerCrm, session: tuple[DeclarativeConnector, CrmCall]
) -> None:
    connector, call = session
    person = fake.add_person("Ari Vance", PHONE)
    contact = ContactRef(id=person["pid"], phone_number=PHONE, name="Ari Vance")
    created = await connector.create_message_log(
        call, MessageLogCreate(contact, _message("See you at 3"), "conv-1", "conv-1-2026-03-02")
    )
    assert created.log_id is not None
    entry = fake.entry(created.log_id)
    assert entry["title"] == "Text with Ari Vance" and entry["kind_id"] == 4
    assert entry["text"] == "Said: See you at 3\nWay: Outbound\nNumber: +14155550100\n"
    assert entry["from"] == "2026-03-02T11:00:00Z"
    await connector.update_message_log(
        call, MessageLogUpdate(contact, _message("Running late"), created.log_id, "conv-1-2026-03-02")
    )
    assert fake.entry(created.log_id)["text"] == "Said: Running late\nWay: Outbound\n"


async def test_user_list_licence_and_logout(
    fake: FakeLedgerCrm, session: tuple[DeclarativeConnector, CrmCall]
) -> None:
    connector, call = session
    users = await connector.get_user_list(call)
    assert [u.to_wire() for u in users] == [
        {"id": "dana.k", "name": "Dana Kim", "email": "dana@ledger.example"},
        {"id": "eli.m", "name": "Eli Moss", "email": "eli@ledger.example"},
    ]
    licence = await connector.get_license_status(call)
    assert licence.to_wire() == {
        "isLicenseValid": True,
        "licenseStatus": "Team",
        "licenseStatusDescription": "plan of dana.k-proxysample",
    }
    await connector.unauthorize(call)  # a POST with no body in the file: `{}` is sent, as the reference does
    assert fake.closed_sessions == 1
    [sent] = fake.requests_to("/session/close", "POST")
    assert sent.json == {}


# --- the reference's defaults where the configuration says nothing ---------------------------------------


async def test_defaults_where_the_reference_has_them(fake: FakeLedgerCrm, tmp_path: Path) -> None:
    """No `url` is the base URL itself; no `idPath` reads `body.id`; no `responseMapping` on a search finds
    nothing; no `listPath` on the user list reads an answer that is itself the list; the configuration's
    own top-level `secretKey` is `{{secretKey}}`."""
    fake.reset()
    fake.add_person("Ari Vance", PHONE)
    config = {
        "secretKey": fake.secret,
        "auth": {"credentialTemplate": "{{apiKey}}", "scheme": "Basic"},
        "requestDefaults": {
            "defaultHeaders": {"Accept": "application/json", "X-Secret-Key": "{{secretKey}}"}
        },
        "operations": {
            "getUserInfo": {"responseMapping": {"idPath": "body.account.login"}},
            "findContact": {"url": "/people", "query": {"tel": "{{phoneNumber}}", "country": "US"}},
            "createContact": {
                "method": "Post",
                "url": "/people",
                "body": {"full_name": "{{newContactName}}", "type": "Contact", "phone": "{{phoneNumber}}"},
                "responseMapping": {"idPath": "body.pid"},
            },
            "getUserList": {
                "url": "/people/search",
                "query": {"q": "Ari"},
                "responseMapping": {"idPath": "pid"},
            },
        },
    }
    cls = connector_class(load_file(_write(tmp_path, "plain.json", config)))
    # no baseUrl: the deployment's setting names the CRM (the server's secret goes to no host a login names)
    connector = cls(ConnectorConfig({"base_url": fake.base_url}))
    transport = build_transport_client(connect_timeout=2, read_timeout=5)
    header = _header(connector, fake.default_key)
    try:
        login = await connector.get_user_info(
            LoginRequest(
                auth_header=header,
                hostname="",
                platform="plain",
                http=CrmHttpClient(transport, base_url=f"{fake.base_url}/session", auth_header=header),
                api_key=fake.default_key,
            )
        )
        assert login.user is not None and login.user.id == "dana.k-plain"
        assert [r.path for r in fake.requests_to("/session")] == ["/session"]  # the base URL itself
        user = UserView(id="dana.k-plain", platform="plain", hostname="")
        call = CrmCall(user, header, CrmHttpClient(transport, base_url=fake.base_url, auth_header=header))
        matches = await connector.find_contact(call, ContactLookup(phone_number=PHONE))
        users = await connector.get_user_list(call)
        created = await connector.create_contact(call, NewContact(PHONE, "Cleo Park", "Contact"))
    finally:
        await transport.aclose()
    assert [c for c in matches.contacts if not c.is_new_contact] == []
    # asked, but told nothing about how to read the answer
    assert [r.path for r in fake.requests_to("/people", "GET")] == ["/people", "/people/search"]
    assert [u.id for u in users] == [p for p in fake.people if fake.people[p]["full_name"] == "Ari Vance"]
    assert created is not None and fake.people[created.contact.id]["full_name"] == "Cleo Park"  # `Post`


# --- templates: the reference's JavaScript rendering ------------------------------------------------------


def test_text_is_written_as_javascript_writes_it() -> None:
    context = {"n": 3.0, "f": 2.5, "tags": ["a", None, 7], "legs": [{}, {}], "name": "Zoë"}
    assert render_string("{{n}} {{f}}", context) == "3 2.5"
    assert render_string("tags: {{tags}}", context) == "tags: a,,7"
    assert render_string("{{legs.length}}", context) == 2 and get_by_path(context, "name.length") == 3
    assert as_text(False) == "false" and as_text(None) == ""
    assert render_string("{{tags.1}}", context) is None and render_string("x{{tags.5}}y", context) == "xy"
