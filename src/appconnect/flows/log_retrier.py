"""The background retrier: delivers the call and message logs the CRM could not take, exactly once.

Every worker runs one; a shared lock lets only one of them (across processes and machines) work at a time,
and every kept row is claimed by a compare-and-set before it is sent, so two retriers or a retrier and the
user's own retry never write the same log twice. A row whose earlier create may have reached the CRM is looked
up in the CRM first (see `Connector.find_call_log`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pydantic import ValidationError

from appconnect.flows.call_logs import deliver_call_log
from appconnect.flows.delivery import Delivery, next_attempt, stale_window
from appconnect.flows.message_logs import log_messages
from appconnect.flows.requests import CallLogBody, MessageLogBody
from appconnect.flows.services import Services
from appconnect.store.call_logs import FAILED, CallLogRow
from appconnect.store.message_logs import OutboxEntry

log = logging.getLogger("appconnect.retrier")

#: rows handled per run, so one run holds the lock for a bounded time
BATCH = 10
LOCK_NAME = "log-retrier"


async def run_once(services: Services) -> int:
    """One pass over the due rows if no other retrier is running; how many logs it delivered."""
    window = stale_window(services.settings)
    async with services.locks.try_hold(LOCK_NAME, ttl=window * (BATCH + 1)) as held:
        if not held:
            return 0
        delivered = 0
        for row in await services.call_logs.due(limit=BATCH, stale_after=window):
            delivered += await _retry_call_log(services, row, window)
        for entry in await services.message_logs.due(limit=BATCH, stale_after=window):
            delivered += await _retry_messages(services, entry, window)
        return delivered


async def _retry_call_log(services: Services, row: CallLogRow, window: float) -> int:
    store = services.call_logs
    pk, user_id = row.pk, row.user_id
    claim = await store.take_over(row, stale_after=window)
    if claim is None:  # the user's own retry (or another retrier) has it
        return 0
    user = await services.users.get(user_id)
    payload = await store.payload(pk)
    try:
        body = CallLogBody.model_validate_json(payload or "")
    except ValidationError:
        body = None
    if user is None or not user.access_token or body is None:
        # logged out (or nothing to send): keep it for an operator rather than lose it
        await store.park(pk, status=FAILED, payload=None, attempts=claim.attempts + 1, next_attempt_at=None)
        return 0
    try:
        _reply, delivery = await deliver_call_log(services, user, body, claim, from_client=False)
    except Exception:
        log.warning("call log retry failed (row %s)", pk, exc_info=True)
        return 0
    return 1 if delivery is Delivery.DONE else 0


async def _retry_messages(services: Services, entry: OutboxEntry, window: float) -> int:
    store = services.message_logs
    payload = await store.claim(entry, stale_after=window)
    if payload is None:
        return 0
    attempts = entry.attempts + 1
    user = await services.users.get(entry.user_id)
    try:
        body = MessageLogBody.model_validate_json(payload)
    except ValidationError:
        body = None
    if user is None or not user.access_token or body is None:
        await store.retry_later(entry.pk, attempts=attempts, next_attempt_at=None)
        return 0
    try:
        _reply, delivery = await log_messages(services, user, body)
    except Exception:
        log.warning("message log retry failed (outbox %s)", entry.pk, exc_info=True)
        delivery = Delivery.RETRY
    if delivery is Delivery.DONE:
        await store.delivered(entry.pk)
        return 1
    if delivery is Delivery.FINAL:
        await store.retry_later(entry.pk, attempts=attempts, next_attempt_at=None)
        return 0
    await store.retry_later(
        entry.pk, attempts=attempts, next_attempt_at=next_attempt(services.settings, attempts)
    )
    return 0


class LogRetrier:
    """Runs `run_once` every `log_retry_interval_seconds` until stopped (the app's lifespan owns it)."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="log-retrier")

    async def stop(self) -> None:
        """Let a running pass finish its current row, then end (bounded by the CRM timeouts)."""
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=stale_window(self._services.settings))
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def _loop(self) -> None:
        interval = self._services.settings.log_retry_interval_seconds
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=interval)
            if self._stop.is_set():
                return
            try:
                await run_once(self._services)
            except Exception:
                log.warning("log retrier pass failed", exc_info=True)
