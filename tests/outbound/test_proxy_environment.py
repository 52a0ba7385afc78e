"""A proxy the outbound client cannot speak (`socks5://`, no scheme) is refused in one line at start, naming the
variable and never the value (it may carry a password): ignoring it would send every CRM call direct."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appconnect.outbound.client import ProxyConfigError, build_transport_client, check_proxy_environment
from tests.support.ports import free_port

APPCONNECT = str(Path(sys.executable).with_name("appconnect"))
PASSWORD = "hunter2-proxy-pw"


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("HTTPS_PROXY", f"socks5://agent:{PASSWORD}@proxy.example:1080", "the scheme 'socks5'"),
        ("ALL_PROXY", f"socks4://agent:{PASSWORD}@proxy.example:1080", "the scheme 'socks4'"),
        ("http_proxy", f"socks5h://agent:{PASSWORD}@proxy.example:1080", "the scheme 'socks5h'"),
        ("HTTP_PROXY", f"agent:{PASSWORD}@proxy.example:3128", "no scheme"),
    ],
)
def test_an_unsupported_proxy_is_refused_by_name_without_its_value(name: str, value: str, said: str) -> None:
    with pytest.raises(ProxyConfigError) as caught:
        check_proxy_environment({"PATH": "/bin", name: value})
    message = str(caught.value)
    assert message.startswith(f"{name} has {said};")
    assert PASSWORD not in message and "proxy.example" not in message


def test_http_proxies_and_empty_variables_are_accepted() -> None:
    check_proxy_environment(
        {
            "HTTP_PROXY": "http://proxy.example:3128",
            "HTTPS_PROXY": "https://proxy.example:3128",
            "ALL_PROXY": "",
            "NO_PROXY": "localhost,127.0.0.1",
        }
    )


def test_the_transport_does_not_start_with_a_socks_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", f"socks5://agent:{PASSWORD}@proxy.example:1080")
    with pytest.raises(ProxyConfigError, match="ALL_PROXY"):
        build_transport_client(connect_timeout=1.0, read_timeout=1.0)


def test_serve_refuses_to_start_with_a_socks_proxy_in_one_line(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("APPCONNECT_", "DATABASE_URL"))}
    environment["HTTPS_PROXY"] = f"socks5://agent:{PASSWORD}@proxy.example:1080"
    result = subprocess.run(
        [APPCONNECT, "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("appconnect: ")]
    assert lines == [
        "appconnect: HTTPS_PROXY has the scheme 'socks5'; the outbound HTTP client only speaks to http:// "
        "proxies (write it as http://host:port, or unset HTTPS_PROXY)"
    ], result.stderr
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
