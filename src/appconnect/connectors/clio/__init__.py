"""The Clio connector."""

from __future__ import annotations

from appconnect.connectors.clio.connector import ClioConnector

__all__ = ["ClioConnector"]
