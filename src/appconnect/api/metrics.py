"""Prometheus `/metrics`: request latency per route, CRM call latency and outcomes per platform, pool usage,
and the workers' process figures (CPU, memory, open files).

Why not prometheus_client's multiprocess mode: there every observation writes to a memory-mapped file under a
lock; here an observation is a few list operations in the worker's memory (bench/http_layer.py measures it),
and each worker writes its whole state to a file of a per-run folder once a second. A scrape, whichever worker
answers it, adds up its own live numbers and the other workers' files, so N workers report their totals. The
answer is rendered by prometheus_client from those totals (a custom collector), in the Prometheus text format
or in OpenMetrics when the scraper asks for it (`Accept: application/openmetrics-text`), with full-precision
numbers (a counter past a million stays exact, so `rate()` is smooth).

- Labels are bounded: a route is a path of the route table (or `/testcrm`, or `unmatched` for everything
  else), a method one of the API's (else `other`), a status its class (`2xx`); a platform one the registry
  knows. No user, account, phone number or raw path ever becomes a label.
- Counters of a worker that died stay counted (its file stays); its pool gauge is dropped (its pid is gone).
- `process_*` add up the server's workers: CPU seconds of every worker of this run (ended ones included, so the
  counter never goes back), resident/virtual memory and open files of the live ones.
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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from appconnect.flows.services import Services
from appconnect.outbound import observe
from appconnect.settings import Settings, is_loopback_host

log = logging.getLogger("appconnect")

METRICS_PATH = "/metrics"
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
        return services.db.usage()

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
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_ServerCollector(self))
        PlatformCollector(registry=self._registry)  # python_info

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
            "process": process_figures(),
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

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """(body, content type): Prometheus text, or OpenMetrics when `accept` asks for it."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self._registry), content_type

    def totals(self) -> ServerTotals:
        """This worker's live numbers plus every other worker's last file."""
        totals = ServerTotals()
        for snapshot in [self.snapshot(), *self._others()]:
            totals.add(snapshot, live=_alive(snapshot.get("pid"), self.pid))
        return totals


class ServerTotals:
    """The numbers of all workers added up, as one scrape reports them."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, ...], list[float]] = {}
        self.crm: dict[tuple[str, ...], list[float]] = {}
        self.responses: dict[tuple[str, ...], float] = {}
        self.in_use = self.capacity = self.live = 0
        self.cpu_seconds = 0.0
        self.live_process: dict[str, float] = {}
        self.max_fds: float | None = None
        self.start_time: float | None = None
        self.process_known = False

    def add(self, snapshot: dict[str, Any], *, live: bool) -> None:
        _add_histograms(self.requests, snapshot.get("requests", []))
        _add_histograms(self.crm, snapshot.get("crm", []))
        for *labels, count in snapshot.get("responses", []):
            key = tuple(labels)
            self.responses[key] = self.responses.get(key, 0) + count
        process = snapshot.get("process")
        if not isinstance(process, dict):
            process = {}
        self.process_known = self.process_known or bool(process)
        self.cpu_seconds += _number(process.get("process_cpu_seconds"))
        if not live:
            return
        self.live += 1
        pool = snapshot.get("pool")
        if pool:
            self.in_use += pool[0]
            self.capacity += pool[1]
        for name in _SUMMED_PROCESS_GAUGES:
            if name in process:
                self.live_process[name] = self.live_process.get(name, 0.0) + _number(process[name])
        if "process_max_fds" in process:
            limit = _number(process["process_max_fds"])
            self.max_fds = limit if self.max_fds is None else min(self.max_fds, limit)
        if "process_start_time_seconds" in process:
            started = _number(process["process_start_time_seconds"])
            self.start_time = started if self.start_time is None else min(self.start_time, started)


class _ServerCollector(Collector):
    """The server's totals as metric families, for prometheus_client's exposition."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        totals = self.metrics.totals()
        yield _histogram(
            "appconnect_http_request_duration_seconds",
            "Time to answer a request, by route template and method.",
            ("route", "method"),
            REQUEST_BUCKETS,
            totals.requests,
        )
        responses = CounterMetricFamily(
            "appconnect_http_requests_total",
            "Requests answered, by route template, method, status class.",
            labels=("route", "method", "status"),
        )
        for labels, count in sorted(totals.responses.items()):
            responses.add_metric(labels, count)
        yield responses
        yield _histogram(
            "appconnect_crm_request_duration_seconds",
            "Duration of a CRM call (its retries included), by platform and outcome (ok or the failure's kind).",
            ("platform", "outcome"),
            CRM_BUCKETS,
            totals.crm,
        )
        crm_calls = CounterMetricFamily(
            "appconnect_crm_requests_total",
            "CRM calls, by platform and outcome (ok or the failure's kind).",
            labels=("platform", "outcome"),
        )
        for labels, entry in sorted(totals.crm.items()):
            crm_calls.add_metric(labels, sum(entry[:-1]))
        yield crm_calls
        yield GaugeMetricFamily(
            "appconnect_db_pool_connections_in_use",
            "Database connections checked out, all live workers.",
            value=totals.in_use,
        )
        yield GaugeMetricFamily(
            "appconnect_db_pool_connections_max",
            "Connections the live workers' pools may open.",
            value=totals.capacity,
        )
        yield GaugeMetricFamily(
            "appconnect_worker_processes",
            "Live worker processes whose numbers this answer includes.",
            value=totals.live,
        )
        if not totals.process_known:
            return  # no /proc here: no process figures
        yield CounterMetricFamily(
            "process_cpu_seconds_total",
            "User and system CPU seconds of the server's workers (ended ones included).",
            value=totals.cpu_seconds,
        )
        for name, help_text in _SUMMED_PROCESS_GAUGES.items():
            yield GaugeMetricFamily(name, help_text, value=totals.live_process.get(name, 0.0))
        if totals.max_fds is not None:
            yield GaugeMetricFamily(
                "process_max_fds", "Open file descriptors a worker may have.", value=totals.max_fds
            )
        if totals.start_time is not None:
            yield GaugeMetricFamily(
                "process_start_time_seconds",
                "Start of the oldest live worker, seconds since the Unix epoch.",
                value=totals.start_time,
            )


_PROCESS_COLLECTOR = ProcessCollector(registry=None)
#: process gauges added up over the live workers
_SUMMED_PROCESS_GAUGES = {
    "process_resident_memory_bytes": "Resident memory of the live workers, in bytes.",
    "process_virtual_memory_bytes": "Virtual memory of the live workers, in bytes.",
    "process_open_fds": "Open file descriptors of the live workers.",
}


def process_figures() -> dict[str, float]:
    """This process's CPU seconds, memory, open files and start time, as prometheus_client reads them."""
    return {family.name: family.samples[0].value for family in _PROCESS_COLLECTOR.collect() if family.samples}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _add_histograms(totals: dict[tuple[str, ...], list[float]], rows: list[list[Any]]) -> None:
    for *labels, entry in rows:
        key = tuple(labels)
        current = totals.get(key)
        if current is None:
            totals[key] = list(entry)
        elif len(current) == len(entry):
            for index, value in enumerate(entry):
                current[index] += value


def _histogram(
    name: str,
    help_text: str,
    label_names: tuple[str, ...],
    bounds: tuple[float, ...],
    series: dict[tuple[str, ...], list[float]],
) -> HistogramMetricFamily:
    """Per-bucket counts (+Inf last, then the sum) as prometheus_client's cumulative buckets."""
    family = HistogramMetricFamily(name, help_text, labels=label_names)
    edges = [*(str(float(bound)) for bound in bounds), "+Inf"]
    for labels, entry in sorted(series.items()):
        cumulative = 0.0
        buckets: list[tuple[str, float]] = []
        for edge, count in zip(edges, entry[:-1], strict=True):
            cumulative += count
            buckets.append((edge, cumulative))
        family.add_metric(labels, buckets, entry[-1])
    return family


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
    token = settings.metrics_token.get_secret_value()
    if token:
        scheme, _, value = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())
    return is_loopback_host(client_host)
