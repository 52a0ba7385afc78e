"""The Bullhorn connector."""

from __future__ import annotations

from appconnect.connectors.bullhorn.connector import BullhornConnector

__all__ = ["BullhornConnector"]
