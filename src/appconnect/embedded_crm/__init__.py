"""A small real CRM shipped with the package, so the connector server can be tried and tested end to end."""

from __future__ import annotations

from appconnect.embedded_crm.app import create_testcrm_app
from appconnect.embedded_crm.store import TestCrmStore

__all__ = ["TestCrmStore", "create_testcrm_app"]
