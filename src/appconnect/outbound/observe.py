"""Who watches CRM calls: observers (the metrics module) get each call's platform, outcome and duration.

The outbound client stays ignorant of metrics: it only wraps its call method in :func:`observed`. The platform
is not known to that client, so it comes from the connector the current task looked up last
(:meth:`ConnectorRegistry.get` records it): a request or a retrier pass talks to one CRM.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from time import perf_counter
from typing import Any, ParamSpec, TypeVar

#: platform, outcome (`ok`, `http_4xx`, `http_5xx`, `rate_limited`, `no_answer`, `failed`), seconds
CrmCallObserver = Callable[[str, str, float], None]

current_platform: ContextVar[str] = ContextVar("crm_platform", default="unknown")
_observers: list[CrmCallObserver] = []

P = ParamSpec("P")
R = TypeVar("R")


def add_observer(observer: CrmCallObserver) -> None:
    if observer not in _observers:
        _observers.append(observer)


def remove_observer(observer: CrmCallObserver) -> None:
    if observer in _observers:
        _observers.remove(observer)


def outcome_of(exc: BaseException) -> str:
    """A bounded label for a failed call: the status class, a 429, no answer at all, or anything else."""
    status: Any = getattr(exc, "status", None)
    if isinstance(status, int):
        if status == 429:
            return "rate_limited"
        return f"http_{status // 100}xx"
    if hasattr(exc, "status"):  # CrmHttpError without a status: timeout or network error
        return "no_answer"
    return "failed"


def observed(call: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Time one whole CRM call (its retries and rate-limit waits included) for the observers, if any."""

    @functools.wraps(call)
    async def timed(*args: P.args, **kwargs: P.kwargs) -> R:
        if not _observers:
            return await call(*args, **kwargs)
        started = perf_counter()
        try:
            result = await call(*args, **kwargs)
        except BaseException as exc:
            _notify(outcome_of(exc), perf_counter() - started)
            raise
        _notify("ok", perf_counter() - started)
        return result

    return timed


def _notify(outcome: str, seconds: float) -> None:
    platform = current_platform.get()
    for observer in _observers:
        observer(platform, outcome, seconds)
