#!/usr/bin/env python3
"""A hostile CRM on loopback against the outbound wire: peak memory growth and time to the clean error.

The CRM (a process of its own) answers each path with one attack: a head of header lines that never ends, one
header line that never ends, and a 1 MiB gzip (or raw deflate, chunked) body that inflates to 1 GiB. Each attack
runs in a fresh client process (the server's own wire, `appconnect.outbound.wire`, as `CrmTransport` sets it up),
which reports its peak RSS growth (`VmHWM` after the call less before it) and the seconds until the clean error.
The target: under 64 MiB each, and an error, not a hang.

`--server` also starts `appconnect serve` (one worker, fresh SQLite folder) whose test CRM connector points at the
hostile CRM, logs in once per attack (`POST /apiKeyLogin`: the connector calls the CRM's `me`), and reports the
worker's peak RSS growth, the login's status and seconds, and whether the server still answers afterwards.

    .venv/bin/python bench/hostile_crm.py                      # the client, every attack
    .venv/bin/python bench/hostile_crm.py --server             # and the server through a login
    .venv/bin/python bench/hostile_crm.py --attacks gzip-bomb --flood-mib 64

Compare with another checkout by running it with that checkout's `src` first on `PYTHONPATH` (an old client may
need a smaller `--flood-mib`: it keeps the whole head).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
ATTACKS = ("many-header-lines", "one-endless-header-line", "gzip-bomb", "deflate-bomb-chunked")
TARGET_MIB = 64


# --- the hostile CRM ---------------------------------------------------------------------------------------------


def bomb(wbits: int, inflated: int) -> bytes:
    """`inflated` zero bytes compressed (about 1/1000 of it), made piece by piece."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = b"\0" * MiB
    parts = [packer.compress(zeros) for _ in range(inflated // MiB)]
    parts.append(packer.flush())
    return b"".join(parts)


async def crm(port_file: Path, flood_mib: int, inflated_mib: int) -> None:
    gzip_bomb = bomb(16 + zlib.MAX_WBITS, inflated_mib * MiB)
    deflate_bomb = bomb(-zlib.MAX_WBITS, inflated_mib * MiB)
    flood_limit = flood_mib * MiB

    async def flood(writer: asyncio.StreamWriter, first: bytes, block: bytes) -> None:
        writer.write(first)
        sent = 0
        while sent < flood_limit:
            writer.write(block)
            await writer.drain()
            sent += len(block)
        writer.write(b"\r\n\r\n")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            if "many-header-lines" in path:
                await flood(writer, b"HTTP/1.1 200 OK\r\n", (b"X-Filler: " + b"a" * 54 + b"\r\n") * 1024)
            elif "one-endless-header-line" in path:
                await flood(writer, b"HTTP/1.1 200 OK\r\nX-Endless: ", b"a" * 65536)
            elif "gzip-bomb" in path:
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                    + f"Content-Length: {len(gzip_bomb)}\r\n\r\n".encode()
                    + gzip_bomb
                )
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: deflate\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                for start in range(0, len(deflate_bomb), 65536):
                    piece = deflate_bomb[start : start + 65536]
                    writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


# --- one attack against the client, in a fresh process ------------------------------------------------------------


def peak_rss_bytes(pid: int | str = "self") -> int:
    """`VmHWM`: the process's peak resident memory so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


async def client(url: str) -> dict[str, Any]:
    from appconnect.outbound.client import build_transport_client

    transport = build_transport_client(connect_timeout=5, read_timeout=20)
    before = peak_rss_bytes()
    started = time.perf_counter()
    try:
        answer = await transport.send("GET", url)
        outcome = f"answer {answer.status_code} ({len(answer.content)} bytes)"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    await transport.aclose()
    return {"growth": peak_rss_bytes() - before, "seconds": seconds, "outcome": outcome}


# --- the same attacks through a running server's login --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 60) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # loopback only
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def through_server(crm_url: str, attack: str) -> dict[str, Any]:
    """One fresh server whose test CRM connector calls the hostile CRM; one login; the worker's memory."""
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APPCONNECT_", "TESTCRM_"))}
        env["TESTCRM_BASE_URL"] = f"{crm_url}/{attack}"
        appconnect = str(Path(sys.executable).with_name("appconnect"))
        process = subprocess.Popen(
            [appconnect, "serve", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if http("GET", f"{base}/crmManifest?platformName=testcrm", timeout=2)[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            else:
                raise RuntimeError("the server did not start")
            before = peak_rss_bytes(process.pid)
            started = time.perf_counter()
            status, body = http(
                "POST", f"{base}/apiKeyLogin", {"platform": "testcrm", "apiKey": "hostile-crm-key"}
            )
            seconds = time.perf_counter() - started
            growth = peak_rss_bytes(process.pid) - before
            still = http("GET", f"{base}/crmManifest?platformName=testcrm", timeout=10)[0]
        finally:
            process.terminate()
            process.wait(timeout=30)
    message = ""
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(body).get("returnMessage", {}).get("message", "")
    return {
        "growth": growth,
        "seconds": seconds,
        "outcome": f"login {status} {message!r}; then the server answers {still}",
    }


# --- the run --------------------------------------------------------------------------------------------------------


def table(title: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
    print(f"\n{title}")
    print(f"{'attack':26} {'peak RSS growth':>16} {'seconds':>8}  outcome")
    for attack, row in rows:
        mark = "ok " if row["growth"] < TARGET_MIB * MiB else "OVER"
        print(
            f"{attack:26} {row['growth'] / MiB:12.1f} MiB {row['seconds']:8.2f}  {mark} {row['outcome'][:110]}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--attacks", default=",".join(ATTACKS), help="comma-separated subset of " + ", ".join(ATTACKS)
    )
    parser.add_argument(
        "--flood-mib", type=int, default=256, help="header bytes an endless head sends at most"
    )
    parser.add_argument("--inflated-mib", type=int, default=1024, help="what a bomb inflates to")
    parser.add_argument("--server", action="store_true", help="also through `appconnect serve` and a login")
    parser.add_argument("--client", help=argparse.SUPPRESS)  # internal: one attack in this (fresh) process
    parser.add_argument("--crm", help=argparse.SUPPRESS)  # internal: run the hostile CRM, port into this file
    args = parser.parse_args()
    if args.crm:
        asyncio.run(crm(Path(args.crm), args.flood_mib, args.inflated_mib))
        return 0
    if args.client:
        print(json.dumps(asyncio.run(client(args.client))))
        return 0
    attacks = [a for a in args.attacks.split(",") if a]
    with tempfile.TemporaryDirectory() as folder:
        port_file = Path(folder) / "port"
        flags = ["--flood-mib", str(args.flood_mib), "--inflated-mib", str(args.inflated_mib)]
        hostile = subprocess.Popen([sys.executable, __file__, "--crm", str(port_file), *flags])
        try:
            for _ in range(600):
                if port_file.exists() and port_file.read_text():
                    break
                time.sleep(0.05)
            crm_url = f"http://127.0.0.1:{port_file.read_text()}"
            run_one: Callable[[str], dict[str, Any]] = lambda attack: json.loads(  # noqa: E731
                subprocess.run(
                    [sys.executable, __file__, "--client", f"{crm_url}/{attack}"],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=600,
                ).stdout
            )
            table("the outbound client (a fresh process per attack)", [(a, run_one(a)) for a in attacks])
            if args.server:
                table(
                    "a server's worker, one API-key login per attack",
                    [(a, through_server(crm_url, a)) for a in attacks],
                )
        finally:
            hostile.terminate()
            hostile.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
