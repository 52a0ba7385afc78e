"""`appconnect serve` in a real process of its own, as an operator starts it: for tests of several workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.ports import free_port


def wait_until_alive(
    base_url: str, process: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float
) -> None:
    """Poll `/isAlive` until it answers OK; the process's output in the error when it dies or never answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base_url}/isAlive", timeout=1).text == "OK":
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raw = process.stdout.read() if process.stdout and process.poll() is not None else ""
            output = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            raise RuntimeError(f"the server at {base_url} did not start:\n{output}")
        time.sleep(0.2)


@contextmanager
def serve_process(
    folder: Path, settings: dict[str, str], *, workers: int = 2, timeout: float = 60
) -> Iterator[str]:
    """`python -m appconnect.cli serve --workers N` in `folder`, with this environment plus `settings` (the
    variables `{base}` in a value becomes the server's URL); its base URL while it runs, then SIGTERM."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "APPCONNECT_PUBLIC_URL": base,
        "APPCONNECT_LOG_LEVEL": "warning",
        **{key: value.replace("{base}", base) for key, value in settings.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "appconnect.cli", "serve", "--workers", str(workers), "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_alive(base, process, timeout)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
