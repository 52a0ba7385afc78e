"""The Redtail CRM connector."""

from __future__ import annotations

from appconnect.connectors.redtail.connector import RedtailConnector

__all__ = ["RedtailConnector"]
