"""Finds connectors (built-ins plus the `appconnect.connectors` entry-point group) and builds the manifest."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any

from appconnect.connectors.sdk import Connector, ConnectorConfig, JsonDict, contact_type_values
from appconnect.outbound.observe import current_platform

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "appconnect.connectors"


class DuplicatePlatformError(RuntimeError):
    """Two different connectors claim one platform name."""


def _builtin_classes() -> list[type[Connector]]:
    from appconnect.connectors.bullhorn import BullhornConnector
    from appconnect.connectors.clio import ClioConnector
    from appconnect.connectors.googlesheets import GoogleSheetsConnector
    from appconnect.connectors.insightly import InsightlyConnector
    from appconnect.connectors.netsuite import NetSuiteConnector
    from appconnect.connectors.pipedrive import PipedriveConnector
    from appconnect.connectors.redtail import RedtailConnector
    from appconnect.connectors.testcrm import TestCrmConnector
    from appconnect.connectors.vinsolutions import VinSolutionsConnector

    return [
        TestCrmConnector,
        PipedriveConnector,
        ClioConnector,
        InsightlyConnector,
        RedtailConnector,
        VinSolutionsConnector,
        BullhornConnector,
        NetSuiteConnector,
        GoogleSheetsConnector,
    ]


def _entry_point_classes() -> list[type[Connector]]:
    found: list[type[Connector]] = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception:  # a broken third-party package must not take the server down
            log.exception("cannot load connector entry point %s", entry.name)
            continue
        if isinstance(loaded, type) and issubclass(loaded, Connector):
            found.append(loaded)
        else:
            log.error("entry point %s is not a Connector subclass", entry.name)
    return found


#: the setting naming declarative connector configurations (also in appconnect.connectors.declarative)
DECLARATIVE_SETTING = "APPCONNECT_DECLARATIVE_CONNECTORS"


def _declarative_classes(environ: Mapping[str, str]) -> list[type[Connector]]:
    """Connectors written as configuration; a configuration that does not validate stops the start."""
    setting = environ.get(DECLARATIVE_SETTING, "")
    if not setting.strip():  # the engine (and jsonschema) is imported only where a configuration is named
        return []
    from appconnect.connectors.declarative import declarative_classes

    return list(declarative_classes(setting))


def connector_config(platform: str, environ: Mapping[str, str]) -> ConnectorConfig:
    """`<PLATFORM>_<KEY>=value` settings become `config.get("<key>")` for that connector."""
    prefix = platform.upper() + "_"
    return ConnectorConfig(
        {k[len(prefix) :].lower(): v for k, v in environ.items() if k.upper().startswith(prefix)}
    )


class ConnectorRegistry:
    """Platform name -> connector instance; refuses two connectors with one name."""

    def __init__(self, classes: Iterable[type[Connector]], environ: Mapping[str, str] | None = None) -> None:
        env = dict(environ if environ is not None else os.environ)
        self._connectors: dict[str, Connector] = {}
        seen: dict[str, type[Connector]] = {}
        for cls in classes:
            name = cls.platform
            if name in seen:
                if seen[name] is cls:
                    continue
                raise DuplicatePlatformError(
                    f"platform {name!r} is provided by both {seen[name].__module__}.{seen[name].__name__} "
                    f"and {cls.__module__}.{cls.__name__}"
                )
            seen[name] = cls
            self._connectors[name] = cls(connector_config(name, env))
        self._manifest_entries: dict[str, JsonDict] = {
            name: c.manifest_entry() for name, c in self._connectors.items()
        }

    @classmethod
    def discover(
        cls, environ: Mapping[str, str] | None = None, *, exclude: Collection[str] = ()
    ) -> ConnectorRegistry:
        """Built-ins, entry points and declarative configurations (`APPCONNECT_DECLARATIVE_CONNECTORS`);
        platforms in `exclude` are not offered (e.g. testcrm when it is off)."""
        env = environ if environ is not None else os.environ
        classes = [*_builtin_classes(), *_entry_point_classes(), *_declarative_classes(env)]
        return cls([c for c in classes if c.platform not in exclude], environ)

    def get(self, platform: str) -> Connector | None:
        connector = self._connectors.get(platform)
        if connector is not None:
            current_platform.set(platform)  # the label of this task's CRM call metrics (outbound/observe.py)
        return connector

    def platforms(self) -> list[str]:
        return list(self._connectors)

    def manifest_entry(self, platform: str) -> JsonDict:
        return self._manifest_entries[platform]

    def contact_types(self, platform: str) -> list[str]:
        return contact_type_values(self._manifest_entries[platform])

    def manifest(
        self, *, server_url: str, version: str, overrides: Mapping[str, Any] | None = None
    ) -> JsonDict:
        """The whole manifest the client loads from `/crmManifest`."""
        manifest: JsonDict = {
            "serverUrl": server_url,
            "redirectUri": "https://ringcentral.github.io/ringcentral-embeddable/redirect.html",
            "author": {"name": "App Connect Python server", "websiteUrl": server_url},
            "platforms": {},
            "version": version,
        }
        for name, connector in self._connectors.items():
            entry = dict(self._manifest_entries[name])
            entry.setdefault("name", name)
            _fill_oauth(entry, connector)
            manifest["platforms"][name] = entry
        if overrides:
            manifest.update({k: v for k, v in overrides.items() if k != "platforms"})
            manifest["platforms"].update(overrides.get("platforms", {}))
        return manifest


def _fill_oauth(entry: JsonDict, connector: Connector) -> None:
    """Client id and redirect URI come from settings, never the secret."""
    auth = entry.get("auth")
    if not isinstance(auth, dict) or auth.get("type") != "oauth":
        return
    try:
        info = connector.oauth_info()
    except Exception:
        return
    oauth = dict(auth.get("oauth") or {})
    oauth["clientId"] = info.client_id
    oauth["redirectUri"] = info.redirect_uri
    if info.authorization_uri:
        oauth["authUrl"] = info.authorization_uri
    entry["auth"] = {**auth, "oauth": oauth}
