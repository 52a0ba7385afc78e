"""Connectors written as configuration (the reference server's proxy format), loaded at start."""

from __future__ import annotations

from appconnect.connectors.declarative.config import ConfigError, load_all, load_file, validation_errors
from appconnect.connectors.declarative.connector import DeclarativeConnector, connector_class

#: the setting (environment variable) naming the configuration files or folders
SETTING = "APPCONNECT_DECLARATIVE_CONNECTORS"


def declarative_classes(setting: str) -> list[type[DeclarativeConnector]]:
    """One connector class per configuration the setting names; raises :class:`ConfigError` on the first bad
    one (the server must not start half-configured)."""
    return [connector_class(config) for config in load_all(setting)]


__all__ = [
    "SETTING",
    "ConfigError",
    "DeclarativeConnector",
    "connector_class",
    "declarative_classes",
    "load_all",
    "load_file",
    "validation_errors",
]
