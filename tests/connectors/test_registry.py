"""The connector registry: discovery, one connector per platform name, per-connector settings."""

from __future__ import annotations

from typing import ClassVar

import httpx
import pytest

from appconnect.connectors.pipedrive import PipedriveConnector
from appconnect.connectors.registry import ConnectorRegistry, DuplicatePlatformError, connector_config
from appconnect.connectors.sdk import Connector, implements
from appconnect.connectors.testcrm import TestCrmConnector


class ImpostorConnector(Connector):
    platform: ClassVar[str] = "testcrm"


def test_two_connectors_for_one_platform_are_refused() -> None:
    with pytest.raises(DuplicatePlatformError, match="testcrm"):
        ConnectorRegistry([TestCrmConnector, ImpostorConnector], environ={})


def test_discovery_finds_the_built_ins_through_entry_points_once() -> None:
    registry = ConnectorRegistry.discover(environ={})
    assert sorted(registry.platforms()) == [
        "bullhorn",
        "clio",
        "googleSheets",
        "insightly",
        "netsuite",
        "pipedrive",
        "redtail",
        "testcrm",
        "vinsolutions",
    ]


def test_connector_settings_come_from_prefixed_variables() -> None:
    config = connector_config("pipedrive", {"PIPEDRIVE_CLIENT_ID": "abc", "OTHER_CLIENT_ID": "no"})
    assert config.get("client_id") == "abc"
    registry = ConnectorRegistry(
        [PipedriveConnector], environ={"PIPEDRIVE_CLIENT_ID": "abc", "PIPEDRIVE_CLIENT_SECRET": "top-secret"}
    )
    manifest = registry.manifest(server_url="http://x", version="1")
    assert manifest["platforms"]["pipedrive"]["auth"]["oauth"]["clientId"] == "abc"
    assert "top-secret" not in str(manifest)


def test_a_minimal_connector_implements_only_what_it_overrides() -> None:
    assert implements(TestCrmConnector(), "create_contact")
    assert not implements(ImpostorConnector(), "create_contact")


def test_implemented_interfaces_route(client: httpx.Client) -> None:
    body = client.get("/implementedInterfaces", params={"platform": "testcrm"}).json()
    assert body["createContact"] is True and body["findContact"] is True and body["getBasicAuth"] is True
    assert "getOauthInfo" not in body
    assert client.get("/implementedInterfaces").text == "Please provide platform."
