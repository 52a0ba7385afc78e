"""Declarative connectors: the reference's format loads unchanged, mistakes are named by their path, the server
refuses to start on one, templates behave as the reference's, tenants stay apart, and the CLI check works.

`proxysample.json` is our own configuration in the reference's format, written the way the reference's sample
is (a blank `meta.name` and `baseUrl`; see test_declarative_reference.py, which runs it over loopback).
The whole client sequence against a configured connector is the conformance suite's (`relay_crm.json` against
`fake_rest_crm.py`, one line in its TARGETS).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from appconnect.cli import main
from appconnect.connectors.declarative import ConfigError, connector_class, load_file, validation_errors
from appconnect.connectors.declarative.config import schema
from appconnect.connectors.declarative.engine import render, render_string
from appconnect.connectors.registry import ConnectorRegistry
from appconnect.connectors.sdk import (
    INTERFACE_METHODS,
    ConnectorConfig,
    CrmCall,
    LimitRule,
    LoginRequest,
    UserView,
    implements,
)
from appconnect.outbound.client import CrmHttpClient, build_transport_client
from tests.connectors.declarative.fake_rest_crm import FakeRelayCrm

HERE = Path(__file__).parent
SAMPLE = HERE / "proxysample.json"
RELAY = HERE / "relay_crm.json"
SRC = str(Path(__file__).resolve().parents[3] / "src")


def _sample() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SAMPLE.read_text())
    return loaded


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeRelayCrm]:
    with FakeRelayCrm() as crm:
        yield crm


def _write(tmp_path: Path, config: dict[str, Any], name: str = "crm.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


# --- the reference's format --------------------------------------------------------------------------------


def test_the_reference_sample_validates_unchanged() -> None:
    assert validation_errors(_sample()) == []


def test_a_platform_name_is_letters_and_digits(tmp_path: Path) -> None:
    config = _sample()
    config["meta"]["name"] = "sample-crm"
    with pytest.raises(ConfigError, match=r"crm\.json: meta\.name: must be"):
        load_file(_write(tmp_path, config))


def test_the_sample_named_is_a_connector_of_exactly_its_operations(tmp_path: Path) -> None:
    config = _sample()
    config["meta"].update(name="sampleCrm", displayName="Sample CRM")
    cls = connector_class(load_file(_write(tmp_path, config)))
    connector = cls(ConnectorConfig())
    offered = {name for name, method in INTERFACE_METHODS.items() if implements(connector, method)}
    assert offered == {
        "getUserInfo",
        "findContact",
        "findContactWithName",
        "createContact",
        "createCallLog",
        "updateCallLog",
        "getCallLog",
        "upsertCallDisposition",
        "createMessageLog",
        "updateMessageLog",
        "getUserList",
        "unAuthorize",
    }
    assert cls.platform == "sampleCrm" and cls.auth_type == "apiKey"
    entry = connector.manifest_entry()
    assert entry["displayName"] == "Sample CRM"
    assert entry["auth"]["apiKey"]["page"]["content"][0]["const"] == "apiKey"


def test_a_folder_setting_registers_each_configuration_as_a_platform(tmp_path: Path) -> None:
    config = _sample()
    config["meta"]["name"] = "sampleCrm"
    _write(tmp_path, config, "a.json")
    (tmp_path / "b.json").write_text(RELAY.read_text())
    registry = ConnectorRegistry.discover(environ={"APPCONNECT_DECLARATIVE_CONNECTORS": str(tmp_path)})
    assert {"sampleCrm", "relayCrm"} <= set(registry.platforms())
    manifest = registry.manifest(server_url="http://127.0.0.1:1", version="1")
    assert manifest["platforms"]["relayCrm"]["contactTypes"][1] == {"display": "Lead", "value": "lead"}
    relay = registry.get("relayCrm")
    assert relay is not None
    assert relay.rate_limits == (LimitRule("per-key", "token", per_seconds=10.0, requests=100),)


# --- errors name the path ----------------------------------------------------------------------------------


def _mutated(change: str) -> dict[str, Any]:
    config = copy.deepcopy(_sample())
    config["meta"]["name"] = "sampleCrm"
    ops = config["operations"]
    if change == "no listPath":
        ops["findCallLog"] = {"url": "/entries", "responseMapping": {"idPath": "id"}}
    elif change == "typo":
        ops["findContact"]["responseMapping"]["lisPath"] = "body.x"
    elif change == "unknown operation":
        ops["findContacts"] = ops["findContact"]
    elif change == "bad encode":
        config["auth"]["encode"] = "hex"
    elif change == "odd method":
        ops["getCallLog"]["method"] = "FETCH"
    elif change == "marker search without marker":
        ops["findCallLog"] = {"url": "/activities", "responseMapping": {"listPath": "body.activities"}}
    return config


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ("no listPath", "operations.findCallLog.responseMapping.listPath: required"),
        ("typo", "operations.findContact.responseMapping.lisPath: not allowed"),
        ("unknown operation", "operations.findContacts: not allowed"),
        ("bad encode", "auth.encode: must be one of base64, none"),
        ("odd method", "operations.getCallLog.method: must be GET, POST, PUT, PATCH or DELETE"),
        (
            "marker search without marker",
            "operations.createCallLog: must write {{marker}} for operations.findCallLog",
        ),
    ],
)
def test_a_mistake_is_named_by_its_path(change: str, error: str) -> None:
    assert validation_errors(_mutated(change))[0] == error


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, "must be more than 0"),
        (-5, "must be more than 0"),
        ("30", "must be number"),
        (True, "must be number"),
        (None, "must be number"),
        (30_000, "must be at most 300"),  # milliseconds written as seconds
    ],
)
def test_a_timeout_that_is_no_duration_is_named_by_its_path(value: Any, error: str) -> None:
    config = _mutated("none")
    config["requestDefaults"]["timeoutSeconds"] = value
    assert validation_errors(config) == [f"requestDefaults.timeoutSeconds: {error}"]
    # the published JSON Schema says so itself, for any tool that checks a configuration against it
    assert not Draft202012Validator(schema()).is_valid(config)


@pytest.mark.parametrize("value", [0.25, 1, 30, 300])
def test_a_timeout_from_a_quarter_second_to_five_minutes_is_valid(value: float) -> None:
    config = _mutated("none")
    config["requestDefaults"]["timeoutSeconds"] = value
    assert validation_errors(config) == []


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_timeout_that_is_not_a_json_number_is_refused(tmp_path: Path, constant: str) -> None:
    """Python's JSON reader takes `NaN`, which no numeric bound refuses: the file is not JSON."""
    config = _mutated("none")
    config["requestDefaults"]["timeoutSeconds"] = 1
    path = tmp_path / "crm.json"
    path.write_text(json.dumps(config).replace('"timeoutSeconds": 1', f'"timeoutSeconds": {constant}'))
    with pytest.raises(ConfigError, match=rf"^crm\.json: not JSON \({constant} is not JSON\)$"):
        load_file(path)


def test_the_server_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, _mutated("no listPath"), "broken.json")
    env = {**os.environ, "PYTHONPATH": SRC, "APPCONNECT_DECLARATIVE_CONNECTORS": str(path)}
    env["APPCONNECT_DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    done = subprocess.run(
        [sys.executable, "-m", "appconnect.cli", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("appconnect: invalid setting: APPCONNECT_DECLARATIVE_CONNECTORS: ")
    assert "broken.json: operations.findCallLog.responseMapping.listPath: required" in lines[0]


# --- templates -----------------------------------------------------------------------------------------------


def test_templates_follow_the_reference() -> None:
    context = {"contact": {"id": 7, "tags": ["a"]}, "flag": True, "ids": [{"id": "x"}]}
    assert render_string("{{contact.id}}", context) == 7  # one template: the raw value
    assert render_string("id={{ contact.id }};{{missing}}", context) == "id=7;"
    assert render_string("{{flag}}!", context) == "true!"
    assert render_string("{{ids.0.id}}", context) == "x"
    assert render({"a": "{{missing}}", "b": ["{{missing}}"], "c": "{{contact.tags}}"}, context) == {
        "b": [None],
        "c": ["a"],
    }
    # a value inside a URL's path cannot reach another resource
    assert render_string("/x/{{v}}", {"v": "1/../2?y"}, escape_path=True) == "/x/1%2F..%2F2%3Fy"


# --- tenants -----------------------------------------------------------------------------------------------


async def test_one_user_id_in_two_workspaces_is_two_users(fake: FakeRelayCrm) -> None:
    cls = connector_class(load_file(RELAY))
    connector = cls(ConnectorConfig({"base_url": f"{fake.base_url}/v1"}))
    transport = build_transport_client(connect_timeout=2, read_timeout=5)
    ids = []
    try:
        for key in (fake.default_key, fake.other_key):
            header = "Basic " + connector.basic_auth(key)
            http = CrmHttpClient(transport, base_url=f"{fake.base_url}/v1", auth_header=header)
            result = await connector.get_user_info(
                LoginRequest(auth_header=header, hostname="", platform="relayCrm", http=http, api_key=key)
            )
            assert result.user is not None
            ids.append((result.user.id, result.user.account_id))
    finally:
        await transport.aclose()
    assert ids == [("u-1~ws-alpha-relayCrm", "ws-alpha"), ("u-1~ws-beta-relayCrm", "ws-beta")]
    # a company-wide rate limit counts each workspace apart, never every company on the one base URL together
    keys = {
        connector.limit_scope_key(
            UserView(id=i, platform="relayCrm", hostname="", platform_additional_info=info), "company"
        )
        for i, info in (
            ("u-1~ws-alpha-relayCrm", {"tenantId": "ws-alpha"}),
            ("u-1~ws-beta-relayCrm", {"tenantId": "ws-beta"}),
        )
    }
    assert len(keys) == 2
    assert all(r.headers.get("x-api-key") == "<redacted>" for r in fake.requests_to("/v1/me"))


# --- appconnect connector check ----------------------------------------------------------------------------


def test_check_validates_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["connector", "check", str(RELAY)]) == 0
    assert capsys.readouterr().out.startswith(
        "valid: platform 'relayCrm', operations: getUserInfo, findContact"
    )
    broken = _write(tmp_path, _mutated("typo"), "typo.json")
    assert main(["connector", "check", str(broken)]) == 1
    assert capsys.readouterr().out.strip() == (
        "invalid: typo.json: operations.findContact.responseMapping.lisPath: not allowed"
    )


def test_check_logs_in_looks_up_and_logs_a_call(
    fake: FakeRelayCrm, capsys: pytest.CaptureFixture[str]
) -> None:
    contact = fake.add_contact("Avery Stone", "(415) 662-0199")
    argv = ["connector", "check", str(RELAY), "--api-key", fake.default_key, "--phone", "+14156620199"]
    assert main([*argv, "--base-url", f"{fake.base_url}/v1"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "login: ok",
        "lookup: 1 contact(s)",
        "call log: created (an id)",
        "get call log: ok",
        "marker search: finds the log",
    ]
    [activity] = [a for a in fake.all_activities() if a["contact_id"] == contact["id"]]
    assert "App Connect connector check" in activity["note"]


def test_check_reports_a_refused_key(fake: FakeRelayCrm, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["connector", "check", str(RELAY), "--api-key", "not-a-key", "--base-url", f"{fake.base_url}/v1"]
    assert main(argv) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "failed: the CRM answered 401"


async def test_name_search_user_list_and_licence(fake: FakeRelayCrm) -> None:
    cls = connector_class(load_file(RELAY))
    connector = cls(ConnectorConfig({"base_url": f"{fake.base_url}/v1"}))
    contact = fake.add_contact("Quincy Marlowe", "+14156620155")
    transport = build_transport_client(connect_timeout=2, read_timeout=5)
    header = "Basic " + connector.basic_auth(fake.default_key)
    user = UserView(id="u-1~ws-alpha-relayCrm", platform="relayCrm", hostname="")
    call = CrmCall(user, header, CrmHttpClient(transport, base_url=f"{fake.base_url}/v1", auth_header=header))
    try:
        named = await connector.find_contact_with_name(call, "marlowe")
        users = await connector.get_user_list(call)
        licence = await connector.get_license_status(call)
    finally:
        await transport.aclose()
    assert [(c.id, c.name, c.type) for c in named.contacts] == [(contact["id"], "Quincy Marlowe", "contact")]
    assert [(u.id, u.email) for u in users] == [("u-1", "u-1@ws-alpha.example")]
    assert licence.to_wire() == {
        "isLicenseValid": True,
        "licenseStatus": "Pro",
        "licenseStatusDescription": "Seats: 5",
    }


@pytest.mark.parametrize("value", [".", "..", " .. "])
def test_a_dot_segment_in_a_urls_path_is_refused(value: str) -> None:
    """`/activities/{{id}}` with the id `..` would be `/activities/..`, which the CRM reads as `/`: another
    resource of the user's CRM, reached by a value that was meant to name one record."""
    with pytest.raises(ValueError, match="dot segment"):
        render_string("/activities/{{id}}/notes", {"id": value.strip()}, escape_path=True)
    assert render_string("/activities/{{id}}", {"id": "a.b"}, escape_path=True) == "/activities/a.b"
