"""The Google Sheets connector."""

from __future__ import annotations

from appconnect.connectors.googlesheets.connector import GoogleSheetsConnector

__all__ = ["GoogleSheetsConnector"]
