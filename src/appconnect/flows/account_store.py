"""Account-level data a connector keeps in the server's storage (`account_data` rows).

One row per CRM account, platform and key, shared by every process and every user of the account: a list such
as Pipedrive's activity types is fetched from the CRM once per its age limit, not once per log or per process.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from appconnect.connectors.sdk import CrmHttpError
from appconnect.store.cache import AccountCache

logger = logging.getLogger(__name__)


class StoredAccountData:
    """:class:`~appconnect.connectors.sdk.AccountData` of one CRM account (the user's scope) and platform."""

    def __init__(self, cache: AccountCache, account_id: str, platform: str) -> None:
        self._cache = cache
        self._account_id = account_id
        self._platform = platform

    async def get(self, key: str, fetch: Callable[[], Awaitable[Any]], *, max_age: float) -> tuple[Any, bool]:
        stored = await self._cache.get_account_data(self._account_id, self._platform, key)
        if stored is not None and datetime.now(UTC) - stored[1] < timedelta(seconds=max_age):
            return stored[0], False
        try:
            fresh = await fetch()
        except CrmHttpError as exc:
            if stored is None or exc.status in (401, 403):
                raise
            logger.warning(
                "%s: account data %s not refreshed (CRM answered %s); the stored copy is used",
                self._platform,
                key,
                exc.status or "nothing",
            )
            return stored[0], False
        await self._cache.put_account_data(self._account_id, self._platform, key, fresh)
        return fresh, True
