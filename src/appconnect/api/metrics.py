"""Prometheus `/metrics`: request latency per route, CRM call latency and outcomes per platform, pool usage.

Why its own small design instead of a client library's multiprocess mode: an observation here is a few list
operations in the worker's memory (no lock, no file write per request; bench/README.md has the cost), and each
worker writes its whole state to a file of a per-run folder once a second. A scrape, whichever worker answers
it, adds up its own live numbers and the other workers' files, so N workers report their totals.

- Labels are bounded: a route is a path of the route table (or `/testcrm`, or `unmatched` for everything
  else), a method one of the API's (else `other`), a status its class (`2xx`); a platform one the registry
  knows. No user, account, phone number or raw path ever becomes a label.
- Counters of a worker that died stay counted (its file stays); its pool gauge is dropped (its pid is gone).
- The run folder: `APPCONNECT_METRICS_DIR` when the supervisor (or operator) sets it; else, under several
  workers, one folder per supervisor process (its pid and start time) in the temp folder, which the next
  start removes once that supervisor is gone; a single worker shares nothing and writes no file.
- Who may read it: with `APPCONNECT_METRICS_TOKEN` set, whoever sends it as a bearer token; without, only
  clients on this machine (loopback), so an internet-facing server does not publish its traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import shutil
import stat
import tempfile
from bisect import bisect_left
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from appconnect.flows.services import Services
from appconnect.outbound import observe
from appconnect.settings import Settings, is_loopback_host

log = logging.getLogger("appconnect")

METRICS_PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FLUSH_SECONDS = 1.0
RUN_DIR_ENV = "APPCONNECT_METRICS_DIR"

REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CRM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
KNOWN_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS", "HEAD"})
_STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}

PoolStats = Callable[[], tuple[int, int] | None]


def database_pool_stats(services: Services) -> PoolStats:
    """(connections checked out, connections the pool may open) of this worker's database pool, when known.

    The one place that knows how the database layer pools connections: re-point it when that layer changes.
    """

    def read() -> tuple[int, int] | None:
        return services.fast.usage()

    return read


class Histograms:
    """One histogram family in this worker: per label tuple, the count of each bucket (+Inf last), then the sum."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        entry = self.series.get(labels)
        if entry is None:
            entry = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        entry[bisect_left(self.bounds, value)] += 1
        entry[-1] += value


class WorkerMetrics:
    """This worker's numbers, its file in the run folder, and the scrape that adds all workers up."""

    def __init__(self, run_dir: Path | None, pool_stats: PoolStats | None = None) -> None:
        self.run_dir = run_dir
        self.pool_stats = pool_stats
        self.pid = os.getpid()
        self.requests = Histograms(REQUEST_BUCKETS)
        self.responses: dict[tuple[str, str, str], int] = {}
        self.crm = Histograms(CRM_BUCKETS)
        self._flusher: asyncio.Task[None] | None = None

    # --- observations (the hot path) ---------------------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in KNOWN_METHODS:
            method = "other"
        self.requests.observe((route, method), seconds)
        key = (route, method, _STATUS_CLASSES.get(status // 100, "other"))
        self.responses[key] = self.responses.get(key, 0) + 1

    def observe_crm(self, platform: str, outcome: str, seconds: float) -> None:
        self.crm.observe((platform, outcome), seconds)

    # --- sharing between workers -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        pool = self.pool_stats() if self.pool_stats is not None else None
        return {
            "pid": self.pid,
            "requests": [[*labels, entry] for labels, entry in self.requests.series.items()],
            "responses": [[*labels, count] for labels, count in self.responses.items()],
            "crm": [[*labels, entry] for labels, entry in self.crm.series.items()],
            "pool": list(pool) if pool is not None else None,
        }

    def flush(self) -> None:
        """Write this worker's state to its file (atomically: a scrape never reads half a file)."""
        if self.run_dir is None:
            return
        target = self.run_dir / f"{self.pid}.json"
        temporary = self.run_dir / f".{self.pid}.tmp"
        data = orjson.dumps(self.snapshot())
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, target)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                self.flush()  # unconditionally: the pool gauge changes without any request being observed
            except OSError as exc:
                log.warning("could not write the metrics file: %s", exc)

    def start(self) -> None:
        observe.add_observer(self.observe_crm)
        if self.run_dir is not None and self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically())

    async def stop(self) -> None:
        observe.remove_observer(self.observe_crm)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        try:
            self.flush()  # the counters of a worker that stops stay in the totals
        except OSError as exc:
            log.warning("could not write the metrics file: %s", exc)

    def _others(self) -> Iterable[dict[str, Any]]:
        if self.run_dir is None:
            return
        try:
            names = os.listdir(self.run_dir)
        except OSError:
            return
        for name in names:
            if not name.endswith(".json") or name == f"{self.pid}.json":
                continue
            try:
                data = orjson.loads((self.run_dir / name).read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue  # a file being replaced or removed: the next scrape reads it
            if isinstance(data, dict):
                yield data

    # --- the scrape --------------------------------------------------------------------------------------

    def render(self) -> bytes:
        """Prometheus text format: this worker's live numbers plus every other worker's last file."""
        snapshots = [self.snapshot(), *self._others()]
        requests: dict[tuple[str, ...], list[float]] = {}
        crm: dict[tuple[str, ...], list[float]] = {}
        responses: dict[tuple[str, ...], float] = {}
        in_use = capacity = 0
        live = 0
        for snapshot in snapshots:
            _add_histograms(requests, snapshot.get("requests", []))
            _add_histograms(crm, snapshot.get("crm", []))
            for *labels, count in snapshot.get("responses", []):
                key = tuple(labels)
                responses[key] = responses.get(key, 0) + count
            if _alive(snapshot.get("pid"), self.pid):
                live += 1
                pool = snapshot.get("pool")
                if pool:
                    in_use += pool[0]
                    capacity += pool[1]
        lines: list[str] = []
        _histogram_lines(
            lines,
            "appconnect_http_request_duration_seconds",
            "Time to answer a request, by route template and method.",
            ("route", "method"),
            REQUEST_BUCKETS,
            requests,
        )
        lines.append(
            "# HELP appconnect_http_requests_total Requests answered, by route template, method, status class."
        )
        lines.append("# TYPE appconnect_http_requests_total counter")
        for labels, count in sorted(responses.items()):
            lines.append(
                f"appconnect_http_requests_total{_labels(('route', 'method', 'status'), labels)} {count:g}"
            )
        _histogram_lines(
            lines,
            "appconnect_crm_request_duration_seconds",
            "Duration of a CRM call (its retries included), by platform and outcome (ok or the failure's kind).",
            ("platform", "outcome"),
            CRM_BUCKETS,
            crm,
        )
        lines.append(
            "# HELP appconnect_crm_requests_total CRM calls, by platform and outcome (ok or the failure's kind)."
        )
        lines.append("# TYPE appconnect_crm_requests_total counter")
        for labels, entry in sorted(crm.items()):
            count = sum(entry[:-1])
            lines.append(f"appconnect_crm_requests_total{_labels(('platform', 'outcome'), labels)} {count:g}")
        lines += [
            "# HELP appconnect_db_pool_connections_in_use Database connections checked out, all live workers.",
            "# TYPE appconnect_db_pool_connections_in_use gauge",
            f"appconnect_db_pool_connections_in_use {in_use}",
            "# HELP appconnect_db_pool_connections_max Connections the live workers' pools may open.",
            "# TYPE appconnect_db_pool_connections_max gauge",
            f"appconnect_db_pool_connections_max {capacity}",
            "# HELP appconnect_worker_processes Live worker processes whose numbers this answer includes.",
            "# TYPE appconnect_worker_processes gauge",
            f"appconnect_worker_processes {live}",
        ]
        return ("\n".join(lines) + "\n").encode()


def _add_histograms(totals: dict[tuple[str, ...], list[float]], rows: list[list[Any]]) -> None:
    for *labels, entry in rows:
        key = tuple(labels)
        current = totals.get(key)
        if current is None:
            totals[key] = list(entry)
        elif len(current) == len(entry):
            for index, value in enumerate(entry):
                current[index] += value


def _histogram_lines(
    lines: list[str],
    name: str,
    help_text: str,
    label_names: tuple[str, ...],
    bounds: tuple[float, ...],
    series: dict[tuple[str, ...], list[float]],
) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} histogram")
    for labels, entry in sorted(series.items()):
        base = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(label_names, labels, strict=True))
        cumulative = 0.0
        for bound, count in zip((*bounds, None), entry[:-1], strict=True):
            cumulative += count
            le = "+Inf" if bound is None else f"{bound:g}"
            lines.append(f'{name}_bucket{{{base},le="{le}"}} {cumulative:g}')
        lines.append(f"{name}_sum{{{base}}} {entry[-1]!r}")
        lines.append(f"{name}_count{{{base}}} {cumulative:g}")


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _alive(pid: Any, own_pid: int) -> bool:
    if pid == own_pid:
        return True
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the run folder -----------------------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), which tells a reused pid apart."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _private_base() -> Path | None:
    """`<tmp>/appconnect-metrics-<uid>`, ours alone (0700, not a link), else None: then nothing is shared."""
    base = Path(tempfile.gettempdir()) / f"appconnect-metrics-{os.getuid()}"
    try:
        base.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(base)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        log.warning("%s is not a private folder of this user: metrics are per worker", base)
        return None
    return base


def _remove_stale_runs(base: Path) -> None:
    """Folders of supervisors that are gone (the pid is free, or now another process's)."""
    for entry in base.iterdir():
        pid_text, _, started = entry.name.partition("-")
        if not pid_text.isdigit():
            continue
        if _start_time(int(pid_text)) != (started or None):
            shutil.rmtree(entry, ignore_errors=True)


def run_directory(settings: Settings) -> Path | None:
    """The folder this server's workers share (None: one worker, nothing to share)."""
    given = os.environ.get(RUN_DIR_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder
    if settings.workers <= 1:
        return None
    base = _private_base()
    if base is None:
        return None
    supervisor = os.getppid()
    started = _start_time(supervisor)
    _remove_stale_runs(base)
    folder = base / (f"{supervisor}-{started}" if started else str(supervisor))
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        log.warning("could not create the metrics folder %s: %s", folder, exc)
        return None
    return folder


def may_read(settings: Settings, authorization: str | None, client_host: str | None) -> bool:
    """With a token configured, the bearer token decides; without, only a client on this machine may read."""
    if settings.metrics_token:
        scheme, _, value = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), settings.metrics_token.encode()
        )
    return is_loopback_host(client_host)
