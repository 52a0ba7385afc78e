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
    check_builtin_modules,
    connector_config,
)
from appconnect.connectors.sdk import Connector, implements
from appconnect.connectors.testcrm import TestCrmConnector
from tests.conftest import connector_server, database_url_for


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


def test_a_built_in_that_cannot_be_imported_fails_alone_with_its_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(ConnectorLoadError, match=r"'ghost' \(appconnect\.connectors\.ghost:GhostConnector\)"):
        LazyConnector("ghost", "appconnect.connectors.ghost:GhostConnector").load()
    registry = ConnectorRegistry(
        [LazyConnector("ghost", "appconnect.connectors.ghost:GhostConnector"), PipedriveConnector], {}
    )
    with caplog.at_level(logging.ERROR, logger="appconnect.connectors.registry"):
        assert registry.get("ghost") is None
        assert registry.get("ghost") is None  # tried once, logged once
        with pytest.raises(KeyError):
            registry.manifest_entry("ghost")
        manifest = registry.manifest(server_url="http://x", version="1")
    assert list(manifest["platforms"]) == ["pipedrive"]
    assert registry.platforms() == ["pipedrive"]
    assert [r.getMessage() for r in caplog.records] == ["connector ghost is left out: ModuleNotFoundError"]
    wrong = ConnectorRegistry([LazyConnector("clio", BUILTIN_CONNECTORS["pipedrive"])], {})
    with pytest.raises(ConnectorLoadError, match="not the connector of platform 'clio'"):
        LazyConnector("clio", BUILTIN_CONNECTORS["pipedrive"]).load()
    assert wrong.get("clio") is None


def test_a_missing_built_in_module_is_logged_at_start_without_importing_any(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(BUILTIN_CONNECTORS, "ghost", "appconnect.connectors.ghost:GhostConnector")
    monkeypatch.setitem(BUILTIN_CONNECTORS, "nowhere", "nowhere_pkg.sub:NowhereConnector")
    with caplog.at_level(logging.ERROR, logger="appconnect.connectors.registry"):
        assert check_builtin_modules() == ["ghost", "nowhere"]
        registry = ConnectorRegistry.discover(environ={})
    assert "built-in connector ghost: module appconnect.connectors.ghost not found" in caplog.text
    assert "built-in connector nowhere: module nowhere_pkg.sub not found" in caplog.text
    assert "ghost" in registry.platforms()  # still offered until its first use fails


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


BROKEN_AT_IMPORT = textwrap.dedent(
    """
    from typing import ClassVar
    from appconnect.connectors.sdk import Connector

    SETTING = {}["CLIENT_SECRET"]  # fails at import, as a connector reading a setting too early would

    class BrokenConnector(Connector):
        platform: ClassVar[str] = "brokenCrm"
    """
)


def test_a_broken_built_in_fails_alone_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A built-in-like table entry whose module raises at import: the worker starts, the whole manifest lists
    the others, the broken platform answers as an unknown one, and one error line names it."""
    (tmp_path / "tp_broken_builtin.py").write_text(BROKEN_AT_IMPORT)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(BUILTIN_CONNECTORS, "brokenCrm", "tp_broken_builtin:BrokenConnector")
    folder = tmp_path / "server"
    folder.mkdir()
    with (
        caplog.at_level(logging.ERROR, logger="appconnect.connectors.registry"),
        connector_server({}, folder, database_url_for("sqlite", folder)) as live,
        httpx.Client(base_url=live.base_url, timeout=30) as http,
    ):
        whole = http.get("/crmManifest")
        one = http.get("/crmManifest", params={"platformName": "brokenCrm"})
        interfaces = http.get("/implementedInterfaces", params={"platform": "brokenCrm"})
        login = http.post(
            "/apiKeyLogin", json={"platform": "brokenCrm", "apiKey": "k", "hostname": "h.example"}
        )
        again = http.get("/crmManifest")
    assert whole.status_code == 200 and again.json() == whole.json()
    assert "brokenCrm" not in whole.json()["platforms"] and "pipedrive" in whole.json()["platforms"]
    assert (one.status_code, one.text) == (400, "Platform not found")
    assert interfaces.status_code == 400
    assert interfaces.json() == {"error": "Connector not found for platform: brokenCrm"}
    assert login.status_code == 400 and "Connector not found for platform: brokenCrm" in login.text
    lines = [r.getMessage() for r in caplog.records if "brokenCrm" in r.getMessage()]
    assert lines == ["connector brokenCrm is left out: KeyError"]
    assert "CLIENT_SECRET" not in caplog.text
