"""The NetSuite connector."""

from __future__ import annotations

from appconnect.connectors.netsuite.connector import NetSuiteConnector

__all__ = ["NetSuiteConnector"]
