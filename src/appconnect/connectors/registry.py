"""Finds connectors (built-ins plus the `appconnect.connectors` entry-point group) and builds the manifest."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from appconnect.connectors.sdk import Connector, ConnectorConfig, JsonDict, contact_type_values
from appconnect.outbound.observe import current_platform

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "appconnect.connectors"


class DuplicatePlatformError(RuntimeError):
    """Two different connectors claim one platform name."""


#: the built-in connectors, platform name -> `module:Class`, in the manifest's order. A worker imports one on
#: its first use, not at start: the nine of them and `phonenumbers` were 80 ms of each worker's start-up (the
#: package's entry points name the same classes; discovery skips those)
BUILTIN_CONNECTORS: dict[str, str] = {
    "testcrm": "appconnect.connectors.testcrm:TestCrmConnector",
    "pipedrive": "appconnect.connectors.pipedrive:PipedriveConnector",
    "clio": "appconnect.connectors.clio:ClioConnector",
    "insightly": "appconnect.connectors.insightly:InsightlyConnector",
    "redtail": "appconnect.connectors.redtail:RedtailConnector",
    "vinsolutions": "appconnect.connectors.vinsolutions:VinSolutionsConnector",
    "bullhorn": "appconnect.connectors.bullhorn:BullhornConnector",
    "netsuite": "appconnect.connectors.netsuite:NetSuiteConnector",
    "googleSheets": "appconnect.connectors.googlesheets:GoogleSheetsConnector",
}


class ConnectorLoadError(RuntimeError):
    """A connector named for a platform could not be imported, or is not the connector of that platform."""


@dataclass(slots=True, frozen=True)
class LazyConnector:
    """A connector known by its platform name and `module:Class`, imported when first asked for."""

    platform: str
    target: str

    def load(self) -> type[Connector]:
        module_name, _, attribute = self.target.partition(":")
        try:
            loaded = getattr(importlib.import_module(module_name), attribute)
        except Exception as exc:
            raise ConnectorLoadError(
                f"connector {self.platform!r} ({self.target}) cannot be imported"
            ) from exc
        if (
            not (isinstance(loaded, type) and issubclass(loaded, Connector))
            or loaded.platform != self.platform
        ):
            raise ConnectorLoadError(f"{self.target} is not the connector of platform {self.platform!r}")
        return loaded


#: what a registry is built from: a connector class, or one to import on first use
ConnectorSource = type[Connector] | LazyConnector


def _builtin_sources() -> list[LazyConnector]:
    return [LazyConnector(name, target) for name, target in BUILTIN_CONNECTORS.items()]


def check_builtin_modules(table: Mapping[str, str] | None = None) -> list[str]:
    """The platforms whose module cannot be found, each logged at start: `find_spec` locates a module without
    importing it, so the built-ins stay lazy and a missing one is still reported before its first request."""
    missing: list[str] = []
    for platform, target in (BUILTIN_CONNECTORS if table is None else table).items():
        module_name = target.partition(":")[0]
        try:
            found = importlib.util.find_spec(module_name) is not None
        except (ImportError, ValueError):  # a parent package that is missing or broken
            found = False
        if not found:
            log.error("built-in connector %s: module %s not found", platform, module_name)
            missing.append(platform)
    return missing


def _entry_point_classes() -> list[type[Connector]]:
    """Third-party connectors, imported at start so that a broken package is reported (and left out) there;
    the entry points of the built-ins are skipped (they are imported on first use)."""
    builtins = set(BUILTIN_CONNECTORS.values())
    found: list[type[Connector]] = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.value.replace(" ", "") in builtins:
            continue
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
    """Platform name -> connector instance; refuses two connectors with one name. A connector given as a
    :class:`LazyConnector` is imported and built on its platform's first use."""

    def __init__(self, classes: Iterable[ConnectorSource], environ: Mapping[str, str] | None = None) -> None:
        self._env = dict(environ if environ is not None else os.environ)
        self._sources: dict[str, ConnectorSource] = {}
        self._connectors: dict[str, Connector] = {}
        self._manifest_entries: dict[str, JsonDict] = {}
        #: platforms whose connector failed to import: left out from then on, as if not offered
        self._broken: set[str] = set()
        for source in classes:
            name = source.platform
            known = self._sources.get(name)
            if known is not None:
                if _same(known, source):
                    continue
                raise DuplicatePlatformError(
                    f"platform {name!r} is provided by both {_describe(known)} and {_describe(source)}"
                )
            self._sources[name] = source
            if not isinstance(source, LazyConnector):
                self._build(name, source)

    @classmethod
    def discover(
        cls, environ: Mapping[str, str] | None = None, *, exclude: Collection[str] = ()
    ) -> ConnectorRegistry:
        """Built-ins, entry points and declarative configurations (`APPCONNECT_DECLARATIVE_CONNECTORS`);
        platforms in `exclude` are not offered (e.g. testcrm when it is off)."""
        env = environ if environ is not None else os.environ
        check_builtin_modules()
        sources: list[ConnectorSource] = [
            *_builtin_sources(),
            *_entry_point_classes(),
            *_declarative_classes(env),
        ]
        return cls([c for c in sources if c.platform not in exclude], environ)

    def _build(self, platform: str, cls: type[Connector]) -> Connector:
        connector = cls(connector_config(platform, self._env))
        self._manifest_entries[platform] = connector.manifest_entry()
        self._connectors[platform] = connector
        return connector

    def _connector(self, platform: str) -> Connector | None:
        """The platform's connector, imported and built on first use; None for a platform not offered or one
        whose connector cannot be imported (logged once; the other platforms go on working)."""
        connector = self._connectors.get(platform)
        if connector is None:
            source = self._sources.get(platform)
            if source is None or platform in self._broken:
                return None
            if not isinstance(source, LazyConnector):
                return self._build(platform, source)
            try:
                loaded = source.load()
            except ConnectorLoadError as exc:
                self._broken.add(platform)
                cause = exc.__cause__ if exc.__cause__ is not None else exc
                # the type only: an exception's text may quote configuration (a secret, a path)
                log.error("connector %s is left out: %s", platform, type(cause).__name__)
                return None
            connector = self._build(platform, loaded)
        return connector

    def get(self, platform: str) -> Connector | None:
        connector = self._connectors.get(platform)
        if connector is None:
            connector = self._connector(platform)
        if connector is not None:
            current_platform.set(platform)  # the label of this task's CRM call metrics (outbound/observe.py)
        return connector

    def platforms(self) -> list[str]:
        """The platforms offered (one whose connector failed to import is no longer one of them)."""
        return [name for name in self._sources if name not in self._broken]

    def manifest_entry(self, platform: str) -> JsonDict:
        entry = self._manifest_entries.get(platform)
        if entry is None:
            if self._connector(platform) is None:
                raise KeyError(platform)
            entry = self._manifest_entries[platform]
        return entry

    def contact_types(self, platform: str) -> list[str]:
        return contact_type_values(self.manifest_entry(platform))

    def manifest(
        self,
        *,
        server_url: str,
        version: str,
        overrides: Mapping[str, Any] | None = None,
        only: Collection[str] | None = None,
    ) -> JsonDict:
        """The manifest the client loads from `/crmManifest`: every platform, or those in `only` (so that one
        platform's manifest imports one connector)."""
        manifest: JsonDict = {
            "serverUrl": server_url,
            "redirectUri": "https://ringcentral.github.io/ringcentral-embeddable/redirect.html",
            "author": {"name": "App Connect Python server", "websiteUrl": server_url},
            "platforms": {},
            "version": version,
        }
        for name in self._sources if only is None else [p for p in only if p in self._sources]:
            if self._connector(name) is None:  # a connector that cannot be imported fails alone
                continue
            entry = dict(self.manifest_entry(name))
            entry.setdefault("name", name)
            _fill_oauth(entry, self._connectors[name])
            manifest["platforms"][name] = entry
        if overrides:
            manifest.update({k: v for k, v in overrides.items() if k != "platforms"})
            manifest["platforms"].update(overrides.get("platforms", {}))
        return manifest


class CrmManifest:
    """The answers of `/crmManifest`, each built when first asked for: one platform's imports that connector
    only, the whole manifest every connector (neither at start)."""

    def __init__(
        self,
        registry: ConnectorRegistry,
        *,
        server_url: str,
        version: str,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        #: the manifest's version (an override's, when the operator's file sets one)
        self.version: Any = overrides.get("version", version) if overrides else version
        self._registry = registry
        self._server_url = server_url
        self._overrides = overrides
        self._whole: JsonDict | None = None
        self._by_platform: dict[str, JsonDict] = {}

    def _build(self, only: Collection[str] | None) -> JsonDict:
        return self._registry.manifest(
            server_url=self._server_url, version=self.version, overrides=self._overrides, only=only
        )

    def whole(self) -> JsonDict:
        if self._whole is None:
            self._whole = self._build(None)
        return self._whole

    def of(self, platform: str) -> JsonDict | None:
        """The manifest with `platform`'s entry alone; None when no connector or override offers it."""
        found = self._by_platform.get(platform)
        if found is None:
            manifest = self._whole if self._whole is not None else self._build([platform])
            entry = manifest["platforms"].get(platform)
            if entry is None:
                return None  # not kept: the names asked for are the client's
            found = self._by_platform[platform] = {**manifest, "platforms": {platform: entry}}
        return found


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


def _same(known: ConnectorSource, other: ConnectorSource) -> bool:
    """Whether two sources are one connector (a built-in also named by an entry point, say)."""
    if isinstance(known, LazyConnector) and isinstance(other, LazyConnector):
        return known.target == other.target
    first = known.load() if isinstance(known, LazyConnector) else known
    second = other.load() if isinstance(other, LazyConnector) else other
    return first is second


def _describe(source: ConnectorSource) -> str:
    if isinstance(source, LazyConnector):
        return source.target.replace(":", ".")
    return f"{source.__module__}.{source.__name__}"
