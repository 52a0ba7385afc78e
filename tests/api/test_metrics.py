"""Prometheus `/metrics` over real HTTP: its series, bounded labels, who may read it, and two workers' totals."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from appconnect.api.app import create_app
from appconnect.api.metrics import FLUSH_SECONDS, REQUEST_BUCKETS
from tests.conftest import LiveServer, make_settings, new_phone
from tests.support.app_server import run_app
from tests.support.served import serve_process

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def parse(text: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """Metric name -> {label set -> value}, from the Prometheus text format (checking every line parses)."""
    samples: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        name, labels, value = match.groups()
        pairs = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or ""))
        samples.setdefault(name, {})[pairs] = float(value)
    return samples


def value(samples: dict[str, dict[frozenset[tuple[str, str]], float]], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for pairs, v in samples.get(name, {}).items() if wanted <= pairs)


def scrape(client: httpx.Client) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def test_metrics_count_requests_per_route_template_and_crm_calls_per_platform(
    client: httpx.Client, jwt: str
) -> None:
    before = scrape(client)
    for _ in range(3):
        assert client.get("/isAlive").status_code == 200
    secret_path = f"/no/such/route/{new_phone()}"
    assert client.get(secret_path).status_code == 404
    phone = new_phone()
    lookup = client.get("/contact", params={"phoneNumber": phone}, headers={"Authorization": f"Bearer {jwt}"})
    assert lookup.status_code == 200

    text = client.get("/metrics").text
    after = parse(text)
    name = "appconnect_http_requests_total"
    alive = {"route": "/isAlive", "method": "GET", "status": "2xx"}
    assert value(after, name, **alive) - value(before, name, **alive) >= 3
    unmatched = {"route": "unmatched", "method": "GET", "status": "4xx"}
    assert value(after, name, **unmatched) - value(before, name, **unmatched) >= 1
    assert value(after, "appconnect_http_request_duration_seconds_count", route="/contact", method="GET") >= 1
    # the histogram's buckets are cumulative and end with +Inf = count
    buckets = {
        dict(pairs)["le"]: v
        for pairs, v in after["appconnect_http_request_duration_seconds_bucket"].items()
        if ("route", "/isAlive") in pairs and ("method", "GET") in pairs
    }
    count = value(after, "appconnect_http_request_duration_seconds_count", route="/isAlive", method="GET")
    assert buckets["+Inf"] == count
    assert list(buckets.values()) == sorted(buckets.values())
    # the lookup asked the test CRM
    assert value(after, "appconnect_crm_requests_total", platform="testcrm", outcome="ok") >= 1
    assert "appconnect_db_pool_connections_in_use" in after
    assert after["appconnect_worker_processes"][frozenset()] >= 1
    # no raw path, phone number or token becomes a label
    assert secret_path not in text
    assert phone.lstrip("+") not in text
    assert jwt not in text


@pytest.fixture
def guarded_server(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.sqlite3'}"
    from appconnect.store.migrate import upgrade

    upgrade(url)

    def build(base: str) -> object:
        return create_app(make_settings(tmp_path, url, public_url=base, metrics_token="scrape-token"))

    with run_app(build) as base_url:
        yield base_url


def test_a_metrics_token_is_required_when_configured(guarded_server: str) -> None:
    with httpx.Client(base_url=guarded_server) as http:
        assert http.get("/metrics").status_code == 403
        assert http.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
        refused = http.get("/metrics", headers={"Authorization": "Basic scrape-token"})
        assert refused.status_code == 403
        assert refused.json()["successful"] is False
        allowed = http.get("/metrics", headers={"Authorization": "Bearer scrape-token"})
        assert allowed.status_code == 200
        assert "appconnect_http_requests_total" in allowed.text


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.sqlite3'}"
    from appconnect.store.migrate import upgrade

    upgrade(url)

    def build(base: str) -> object:
        return create_app(make_settings(tmp_path, url, public_url=base, metrics_enabled=False))

    with run_app(build) as base_url, httpx.Client(base_url=base_url) as http:
        assert http.get("/isAlive").status_code == 200
        assert http.get("/metrics").status_code == 404


@pytest.fixture(scope="module")
def two_workers(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`appconnect serve --workers 2`, as an operator starts it."""
    folder: Path = tmp_path_factory.mktemp("metrics-workers")
    settings = {
        "APPCONNECT_DATABASE_URL": server.settings.database_url,
        "APPCONNECT_KEY_FILE": str(folder / "keys.json"),
        "APPCONNECT_TESTCRM_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'testcrm.sqlite3'}",
    }
    with serve_process(folder, settings) as base:
        yield base


def _fresh_scrape(base: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """A scrape on a new connection: whichever worker accepts it answers."""
    with httpx.Client(base_url=base, headers={"Connection": "close"}) as http:
        return scrape(http)


def test_two_workers_report_their_totals_whichever_answers(two_workers: str) -> None:
    labels = {"route": "/serverVersionInfo", "method": "GET", "status": "2xx"}
    sent = 40
    for _ in range(sent):  # a new connection each: the kernel hands them to either worker
        response = httpx.get(f"{two_workers}/serverVersionInfo", headers={"Connection": "close"})
        assert response.status_code == 200
    # each worker writes its numbers for the others once a second: wait for both to have done so
    deadline = time.monotonic() + 20
    while True:
        samples = _fresh_scrape(two_workers)
        if value(samples, "appconnect_http_requests_total", **labels) == sent:
            break
        assert time.monotonic() < deadline, (
            f"totals never reached {sent}: {samples.get('appconnect_http_requests_total')}"
        )
        time.sleep(0.3)
    # the worker that answered counted its own requests live; the other's file may be up to one flush old
    time.sleep(FLUSH_SECONDS + 0.5)
    assert samples["appconnect_worker_processes"][frozenset()] == 2
    # every answer, from either worker, carries both workers' requests
    for _ in range(6):
        samples = _fresh_scrape(two_workers)
        assert value(samples, "appconnect_http_requests_total", **labels) == sent
        assert (
            value(samples, "appconnect_http_request_duration_seconds_count", route="/serverVersionInfo")
            == sent
        )
        assert samples["appconnect_worker_processes"][frozenset()] == 2


def test_a_counter_past_a_million_renders_integer_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`%g` printed 1234568 as 1.23457e+06, so `rate()` saw a staircase; every digit is kept now."""
    run_dir = tmp_path / "metrics"
    run_dir.mkdir(mode=0o700)
    ended = 2**30  # no such process: a worker of this run that ended after answering 1,234,567 requests
    requests_entry = [0.0] * (len(REQUEST_BUCKETS) + 1) + [61728.35]
    requests_entry[0] = 1_234_567.0
    (run_dir / f"{ended}.json").write_text(
        json.dumps(
            {
                "pid": ended,
                "requests": [["/isAlive", "GET", requests_entry]],
                "responses": [["/isAlive", "GET", "2xx", 1_234_567]],
                "crm": [],
                "pool": None,
                "process": {"process_cpu_seconds": 12_345.5},
            }
        )
    )
    monkeypatch.setenv("APPCONNECT_METRICS_DIR", str(run_dir))
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.sqlite3'}"
    from appconnect.store.migrate import upgrade

    upgrade(url)

    def build(base: str) -> object:
        return create_app(make_settings(tmp_path, url, public_url=base))

    with run_app(build) as base_url, httpx.Client(base_url=base_url) as http:
        assert http.get("/isAlive").status_code == 200
        response = http.get("/metrics")
    samples = parse(response.text)
    alive = {"route": "/isAlive", "method": "GET", "status": "2xx"}
    assert value(samples, "appconnect_http_requests_total", **alive) == 1_234_568
    assert value(samples, "appconnect_http_request_duration_seconds_count", route="/isAlive") == 1_234_568
    # the ended worker's CPU stays counted: the counter never goes back when a worker is replaced
    assert value(samples, "process_cpu_seconds_total") > 12_345.5


def test_openmetrics_is_served_when_the_scraper_asks_for_it(client: httpx.Client) -> None:
    assert client.get("/isAlive").status_code == 200
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert response.text.endswith("# EOF\n")
    assert "# TYPE appconnect_http_requests counter" in response.text
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["appconnect_http_requests"].type == "counter"
    assert families["appconnect_http_request_duration_seconds"].type == "histogram"
    assert any(s.labels.get("route") == "/isAlive" for s in families["appconnect_http_requests"].samples)
    # without the OpenMetrics type in Accept, the classic text format
    plain = client.get("/metrics", headers={"Accept": "text/plain"})
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# EOF" not in plain.text


def test_process_metrics_are_included(client: httpx.Client) -> None:
    samples = scrape(client)
    assert value(samples, "process_cpu_seconds_total") > 0
    assert value(samples, "process_resident_memory_bytes") > 10 * 1024 * 1024
    assert value(samples, "process_open_fds") > 0
    assert value(samples, "process_max_fds") > 0
    assert value(samples, "process_start_time_seconds") > 1.6e9
    assert "python_info" in samples
