"""The Insightly connector."""

from __future__ import annotations

from appconnect.connectors.insightly.connector import InsightlyConnector

__all__ = ["InsightlyConnector"]
