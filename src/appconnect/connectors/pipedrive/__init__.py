"""The Pipedrive connector."""

from __future__ import annotations

from appconnect.connectors.pipedrive.connector import PipedriveConnector

__all__ = ["PipedriveConnector"]
