"""The connector registry: discovery, one connector per platform name, per-connector settings."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from appconnect.connectors.pipedrive import PipedriveConnector
from appconnect.connectors.registry import (
    BUILTIN_CONNECTORS,
    ConnectorLoadError,
    ConnectorRegistry,
    CrmManifest,
    DuplicatePlatformError,
    LazyConnector,
    connector_config,
)
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


# --- built-ins imported on first use ---------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_built_in_table_names_each_connector_and_the_entry_points_name_the_same() -> None:
    """Discovery skips the package's own entry points because the table imports the same classes."""
    for platform, target in BUILTIN_CONNECTORS.items():
        assert LazyConnector(platform, target).load().platform == platform
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared["appconnect.connectors"] == BUILTIN_CONNECTORS


def test_discovery_imports_no_connector_until_its_platform_is_used() -> None:
    """A fresh interpreter: start-up (discovery, the app's manifest object) imports no connector; one platform's
    manifest or route imports that connector alone; the whole manifest all of them."""
    script = textwrap.dedent(
        """
        import sys
        from appconnect.connectors.registry import BUILTIN_CONNECTORS, ConnectorRegistry, CrmManifest

        def loaded():
            return sorted(p for p, t in BUILTIN_CONNECTORS.items() if t.split(":")[0] in sys.modules)

        registry = ConnectorRegistry.discover(environ={})
        manifest = CrmManifest(registry, server_url="http://x", version="1")
        print(len(registry.platforms()), loaded(), "phonenumbers" in sys.modules)
        print(sorted(manifest.of("pipedrive")["platforms"]), loaded())
        print(manifest.of("nowhere"), registry.get("nowhere"), loaded())
        print(registry.contact_types("clio") is not None, loaded())
        print(len(manifest.whole()["platforms"]), len(loaded()))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "9 [] False",
        "['pipedrive'] ['pipedrive']",
        "None None ['pipedrive']",
        "True ['clio', 'pipedrive']",
        "9 9",
    ]


def test_the_lazy_manifest_is_the_manifest() -> None:
    overrides = {"version": "9.9", "platforms": {"extra": {"name": "extra"}}}
    registry = ConnectorRegistry.discover(environ={"PIPEDRIVE_CLIENT_ID": "abc"})
    whole = registry.manifest(server_url="http://x", version="1", overrides=overrides)
    lazy = CrmManifest(
        ConnectorRegistry.discover(environ={"PIPEDRIVE_CLIENT_ID": "abc"}),
        server_url="http://x",
        version="1",
        overrides=overrides,
    )
    one = lazy.of("pipedrive")
    assert one == {**whole, "platforms": {"pipedrive": whole["platforms"]["pipedrive"]}}
    assert lazy.of("extra") == {**whole, "platforms": {"extra": {"name": "extra"}}}
    assert lazy.whole() == whole
    assert lazy.version == "9.9"


def test_a_built_in_that_cannot_be_imported_fails_with_its_name() -> None:
    registry = ConnectorRegistry([LazyConnector("ghost", "appconnect.connectors.ghost:GhostConnector")], {})
    assert registry.platforms() == ["ghost"]
    with pytest.raises(ConnectorLoadError, match=r"'ghost' \(appconnect\.connectors\.ghost:GhostConnector\)"):
        registry.get("ghost")
    wrong = ConnectorRegistry([LazyConnector("clio", BUILTIN_CONNECTORS["pipedrive"])], {})
    with pytest.raises(ConnectorLoadError, match="not the connector of platform 'clio'"):
        wrong.manifest_entry("clio")


# --- third-party entry points, loaded at start -------------------------------------------------------------------


def install_distribution(folder: Path, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A package on `sys.path` as pip would leave it: its modules and a dist-info naming its entry points."""
    info = folder / "thirdparty_connectors-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-connectors\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[appconnect.connectors]\n{lines}")
    for name, text in modules.items():
        (folder / f"{name}.py").write_text(text)


GOOD_CONNECTOR = textwrap.dedent(
    """
    from typing import ClassVar
    from appconnect.connectors.sdk import Connector

    class ThirdPartyConnector(Connector):
        platform: ClassVar[str] = "thirdPartyCrm"
    """
)


def test_a_broken_third_party_entry_point_is_reported_at_start_and_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    install_distribution(
        tmp_path,
        {
            "thirdPartyCrm": "tp_good:ThirdPartyConnector",
            "brokenCrm": "tp_broken:BrokenConnector",
            "notAConnector": "tp_good:GOOD_CONNECTOR_TEXT",
        },
        {
            "tp_good": GOOD_CONNECTOR + "GOOD_CONNECTOR_TEXT = 'text'\n",
            "tp_broken": "raise ImportError('no')\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with caplog.at_level(logging.ERROR, logger="appconnect.connectors.registry"):
        registry = ConnectorRegistry.discover(environ={})
    assert "thirdPartyCrm" in registry.platforms()
    assert "brokenCrm" not in registry.platforms() and "notAConnector" not in registry.platforms()
    assert "cannot load connector entry point brokenCrm" in caplog.text
    assert "entry point notAConnector is not a Connector subclass" in caplog.text
    assert "tp_good" in sys.modules  # imported at discovery, unlike the built-ins
    assert CrmManifest(registry, server_url="http://x", version="1").of("thirdPartyCrm") is not None


def test_a_third_party_connector_claiming_a_built_in_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(
        tmp_path,
        {"pipedrive": "tp_impostor:PipedriveImpostor"},
        {
            "tp_impostor": GOOD_CONNECTOR.replace("ThirdPartyConnector", "PipedriveImpostor").replace(
                '"thirdPartyCrm"', '"pipedrive"'
            )
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        DuplicatePlatformError, match=r"appconnect\.connectors\.pipedrive\.PipedriveConnector"
    ):
        ConnectorRegistry.discover(environ={})
