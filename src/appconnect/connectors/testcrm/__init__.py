"""The connector for the embedded test CRM (`appconnect.embedded_crm`)."""

from __future__ import annotations

from appconnect.connectors.testcrm.connector import TestCrmConnector

__all__ = ["TestCrmConnector"]
