"""The VinSolutions connector."""

from __future__ import annotations

from appconnect.connectors.vinsolutions.connector import VinSolutionsConnector

__all__ = ["VinSolutionsConnector"]
