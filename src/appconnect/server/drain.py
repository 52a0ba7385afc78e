"""How long a stopping worker waits for its in-flight requests (shared by `serve` and the workers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appconnect.settings import Settings


def graceful_timeout(settings: Settings) -> int:
    """A CRM call is bounded by its timeouts (one read retry included): SIGTERM waits that long, plus slack."""
    return int(settings.crm_read_timeout * 2 + settings.crm_connect_timeout + 10)
