"""The server's secret never goes to a host the user typed: a configuration whose URL a template can point
elsewhere is refused at start unless it lists `meta.allowedHosts`, and every request carrying `{{secretKey}}` is
checked against the configuration's fixed hosts and that list before it is sent (two Ledger CRM fakes on
loopback: the real one, and a hostile one recording whatever reaches it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from appconnect.connectors.declarative import ConfigError, connector_class, load_file, validation_errors
from appconnect.connectors.declarative.hosts import HostNotAllowed, host_allowed
from appconnect.connectors.sdk import ConnectorConfig, ContactLookup, CrmCall, LoginRequest, UserView
from appconnect.outbound.client import CrmHttpClient, build_transport_client
from tests.conftest import LiveServer, connector_server, database_url_for
from tests.connectors.declarative.fake_ledger_crm import FakeLedgerCrm

SAMPLE = Path(__file__).with_name("proxysample.json")


def _sample(base_url: str, **meta: Any) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(SAMPLE.read_text())
    config["meta"] = {**config["meta"], "name": "hostCrm", **meta}
    config["requestDefaults"]["baseUrl"] = base_url
    return config


def _write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "hostCrm.json"
    path.write_text(json.dumps(config))
    return path


# --- at start -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    [
        "https://{{hostname}}/api",
        "https://{{user.hostname}}.crm.example",
        "{{hostname}}",
        "https://a.example:{{port}}",
    ],
)
def test_a_templated_host_with_the_secret_is_refused_by_its_path(base_url: str) -> None:
    errors = validation_errors(_sample(base_url))
    assert errors[0] == (
        "requestDefaults.baseUrl: a template decides the host of operations.getUserInfo, which sends "
        "{{secretKey}}; fix the host or list meta.allowedHosts"
    )


def test_an_operation_url_or_a_step_url_deciding_the_host_is_named(tmp_path: Path) -> None:
    config = _sample("https://api.ledger.example")
    config["requestDefaults"]["defaultHeaders"].pop("X-Secret-Key")
    config["operations"]["getUserInfo"]["url"] = "{{hostname}}/session"
    config["operations"]["getUserInfo"]["headers"] = {"X-Secret-Key": "{{ secretKey }}"}
    config["operations"]["findContact"] = {
        "steps": [
            {"name": "first", "url": "/people"},
            {"url": "{{steps.first.body.next}}", "query": {"key": "{{secretKey}}"}},
        ]
    }
    assert validation_errors(config) == [
        "operations.getUserInfo.url: a template decides the host of operations.getUserInfo, which sends "
        "{{secretKey}}; fix the host or list meta.allowedHosts",
        "operations.findContact.steps.1.url: a template decides the host of operations.findContact.steps.1, "
        "which sends {{secretKey}}; fix the host or list meta.allowedHosts",
    ]
    with pytest.raises(
        ConfigError, match=r"^hostCrm\.json: operations\.getUserInfo\.url: .* \(and 1 more\)$"
    ):
        load_file(_write(tmp_path, config))


def test_the_secret_in_the_credential_template_counts() -> None:
    config = _sample("https://{{hostname}}")
    config["requestDefaults"]["defaultHeaders"].pop("X-Secret-Key")
    assert validation_errors(config) == []  # the user's own key to the user's own host: the point of it
    config["auth"]["credentialTemplate"] = "{{apiKey}}:{{secretKey}}"
    assert validation_errors(config)[0].startswith("requestDefaults.baseUrl: a template decides the host")


@pytest.mark.parametrize(
    "config",
    [
        _sample("https://api.ledger.example/{{hostname}}/v1"),  # a template in the path decides no host
        _sample("https://{{hostname}}", allowedHosts=["*.ledger.example", "ledger.example:8443"]),
        _sample(""),  # the deployment's <PLATFORM>_BASE_URL must name the host
    ],
)
def test_a_fixed_host_or_an_allow_list_is_accepted(config: dict[str, Any]) -> None:
    assert validation_errors(config) == []


@pytest.mark.parametrize("entry", ["https://a.example", "a.example/x", "*", "a..example"])
def test_an_allowed_host_is_a_host_pattern(entry: str) -> None:
    assert validation_errors(_sample("https://{{hostname}}", allowedHosts=[entry]))[0].startswith(
        "meta.allowedHosts.0: pattern"
    )


def test_host_patterns() -> None:
    listed = ["*.ledger.example", "api.other.example", "127.0.0.1:8080"]
    assert host_allowed("https://eu.ledger.example/x", listed)
    assert not host_allowed("https://ledger.example/x", listed)  # `*.` is the names under it
    assert not host_allowed("https://eu.ledger.example.evil.example/x", listed)
    assert not host_allowed("https://eu.ledger.example:444/x", listed)  # no port written: the scheme's
    assert host_allowed("https://API.other.example./x", listed)
    assert not host_allowed("http://api.other.example:443/x", listed)
    assert host_allowed("http://127.0.0.1:8080/x", listed) and not host_allowed(
        "http://127.0.0.1:8081", listed
    )
    assert not host_allowed("http://api.other.example@evil.example/x", listed)
    assert not host_allowed("not a url", listed)


# --- at request time ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crm() -> Iterator[FakeLedgerCrm]:
    with FakeLedgerCrm() as fake:
        yield fake


@pytest.fixture(scope="module")
def hostile() -> Iterator[FakeLedgerCrm]:
    """A second server on loopback, standing for a host the user typed: it records what reaches it."""
    with FakeLedgerCrm() as fake:
        yield fake


def _address(fake: FakeLedgerCrm) -> str:
    return urlsplit(fake.base_url).netloc


@pytest.fixture(scope="module")
def server(crm: FakeLedgerCrm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A `{{hostname}}` configuration sending the secret, allowed to reach the real CRM's address only."""
    folder = tmp_path_factory.mktemp("declarative-hosts")
    path = _write(folder, _sample("http://{{hostname}}", allowedHosts=[_address(crm)]))
    env = {"APPCONNECT_DECLARATIVE_CONNECTORS": str(path), "HOSTCRM_SECRET_KEY": crm.secret}
    with connector_server(env, folder, database_url_for("sqlite", folder)) as live:
        yield live


def _login(server: LiveServer, hostname: str) -> httpx.Response:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        return client.post(
            "/apiKeyLogin",
            json={"platform": "hostCrm", "apiKey": FakeLedgerCrm.default_key, "hostname": hostname},
        )


def test_a_login_to_an_allowed_host_sends_the_secret_there(crm: FakeLedgerCrm, server: LiveServer) -> None:
    crm.reset()
    login = _login(server, _address(crm))
    assert login.status_code == 200, login.text
    assert [r.headers.get("x-secret-key") for r in crm.requests_to("/session")] == [crm.secret]


def test_a_hostile_hostname_at_login_gets_no_request_with_the_secret(
    crm: FakeLedgerCrm, hostile: FakeLedgerCrm, server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    hostile.reset()
    login = _login(server, _address(hostile))
    assert login.status_code == 400  # the answer of a CRM that did not answer: nothing was sent
    assert login.json()["returnMessage"]["message"] == "Could not load user information"
    assert hostile.requests == []
    assert "getUserInfo: not sent, it carries the server's secret to a host not allowed" in caplog.text
    assert _address(hostile) not in caplog.text


async def test_no_base_url_anywhere_sends_the_secret_to_no_host_a_login_named(
    hostile: FakeLedgerCrm, tmp_path: Path
) -> None:
    """Defence in depth: a blank `baseUrl` passes the start-time check (the deployment's setting should name
    the CRM); with no setting, the server's fallback is the user's host, and the engine refuses to go there."""
    hostile.reset()
    cls = connector_class(load_file(_write(tmp_path, _sample(""))))
    connector = cls(ConnectorConfig({"secret_key": hostile.secret}))
    transport = build_transport_client(connect_timeout=2, read_timeout=5)
    header = "Basic " + connector.basic_auth(FakeLedgerCrm.default_key)
    user = UserView(id="u", platform="hostCrm", hostname=_address(hostile))
    try:
        http = CrmHttpClient(transport, base_url=hostile.base_url, auth_header=header)
        with pytest.raises(HostNotAllowed):
            await connector.get_user_info(
                LoginRequest(
                    auth_header=header,
                    hostname=_address(hostile),
                    platform="hostCrm",
                    http=http,
                    api_key=FakeLedgerCrm.default_key,
                )
            )
        with pytest.raises(HostNotAllowed):
            await connector.find_contact(
                CrmCall(user, header, http), ContactLookup(phone_number="+14155550142")
            )
    finally:
        await transport.aclose()
    assert hostile.requests == []


async def test_the_secrets_value_written_literally_is_recognised(
    hostile: FakeLedgerCrm, tmp_path: Path
) -> None:
    """A header holding the secret's text, not its template, passes the start-time check; the engine still
    recognises the value and does not send it to the user's host."""
    hostile.reset()
    config = _sample("http://{{hostname}}")
    config["requestDefaults"]["defaultHeaders"]["X-Secret-Key"] = hostile.secret
    assert validation_errors(config) == []
    cls = connector_class(load_file(_write(tmp_path, config)))
    connector = cls(ConnectorConfig({"secret_key": hostile.secret}))
    transport = build_transport_client(connect_timeout=2, read_timeout=5)
    header = "Basic " + connector.basic_auth(FakeLedgerCrm.default_key)
    try:
        http = CrmHttpClient(transport, base_url=hostile.base_url, auth_header=header)
        login = LoginRequest(
            auth_header=header,
            hostname=_address(hostile),
            platform="hostCrm",
            http=http,
            api_key=FakeLedgerCrm.default_key,
        )
        with pytest.raises(HostNotAllowed):
            await connector.get_user_info(login)
    finally:
        await transport.aclose()
    assert hostile.requests == []
