"""A forwarding HTTP proxy that makes any CRM answer anything: the server under test reaches every fake CRM
through it (`HTTP_PROXY`), and a rule replaces the answers of one kind of request with a chosen one.

A rule either answers by itself (`Canned`: any status, content type and bytes, before the CRM sees the
request, or after the CRM did the work), or lets the CRM answer and then rewrites the JSON it answered
(`Rewrite`: a value replaced by one of another type, a key dropped). It serves the conformance suite's fuzz of
CRM answers for every connector, the embedded test CRM included, without touching any fake.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
    "accept-encoding",
    "host",
}
_MAX_HEAD = 64 * 1024
_MAX_BODY = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Canned:
    """This answer, byte for byte. `after`: the CRM gets the request (and does the work) first."""

    status: int
    content_type: str | None
    body: bytes
    after: bool = False


@dataclass(frozen=True, slots=True)
class Rewrite:
    """The CRM's own answer with its JSON changed: each edit picks a value (`index` modulo how many the answer
    holds, in document order) and puts `value` there, or drops it when `drop`. `status` replaces the CRM's."""

    edits: tuple[tuple[int, Any, bool], ...]
    status: int | None = None


@dataclass(slots=True)
class Rule:
    method: str | None
    path_prefix: str
    answer: Canned | Rewrite
    hits: int = 0


def dump_json(value: Any) -> bytes:
    """JSON of any value hypothesis makes, integers past 64 bits included (orjson refuses those)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every value's path in a JSON document (the root excluded), in document order."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*path, key))
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((*path, index))
            found += _paths(item, (*path, index))
    return found


def rewritten(document: Any, edits: tuple[tuple[int, Any, bool], ...]) -> Any:
    """`document` with the edits applied one after the other (a path gone by an earlier edit is skipped)."""
    for index, value, drop in edits:
        paths = _paths(document)
        if not paths:
            return value if not drop else document
        path = paths[index % len(paths)]
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if drop:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
    return document


@dataclass
class HostileProxy:
    """The proxy, serving on 127.0.0.1 in a thread of its own; `url` is what `HTTP_PROXY` names."""

    rules: list[Rule] = field(default_factory=list)
    url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _client: httpx.AsyncClient | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            port = server.sockets[0].getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            self._client = httpx.AsyncClient(trust_env=False, timeout=30)
            ready.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.run_until_complete(self._client.aclose())
            loop.close()

        self._thread = threading.Thread(target=run, name="hostile-proxy", daemon=True)
        self._thread.start()
        assert ready.wait(10), "the proxy did not start"

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def answer(self, method: str | None, path_prefix: str, answer: Canned | Rewrite) -> Rule:
        """From now on, requests of `method` (any when None) under `path_prefix` get `answer`."""
        rule = Rule(method.upper() if method else None, path_prefix, answer)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _rule_for(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                # paths compared without case: some CRMs' are case-insensitive (Insightly's `/v3.1/Leads/Search`)
                if (rule.method is None or rule.method == method) and path.lower().startswith(
                    rule.path_prefix.lower()
                ):
                    rule.hits += 1
                    return rule
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request per connection (answered with `Connection: close`), so a rule applies per request."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_HEAD:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            length = min(int(headers.get("content-length", "0") or 0), _MAX_BODY)
            body = await reader.readexactly(length) if length else b""
            status, content_type, content, location = await self._answer(method, target, headers, body)
            head_out = [f"HTTP/1.1 {status} Fuzzed", f"Content-Length: {len(content)}", "Connection: close"]
            if content_type is not None:
                head_out.append(f"Content-Type: {content_type}")
            if location is not None:  # a CRM that names a created record only there (VinSolutions, NetSuite)
                head_out.append(f"Location: {location}")
            writer.write(("\r\n".join(head_out) + "\r\n\r\n").encode("latin-1") + content)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str | None, bytes, str | None]:
        """(status, content type, body, Location): the CRM's own, or the rule's (a canned answer has no
        Location)."""
        rule = self._rule_for(method, urlsplit(target).path)
        answer = rule.answer if rule is not None else None
        if isinstance(answer, Canned) and not answer.after:
            return answer.status, answer.content_type, answer.body, None
        forwarded = {k: v for k, v in headers.items() if k not in _HOP_BY_HOP}
        assert self._client is not None
        upstream = await self._client.request(method, target, headers=forwarded, content=body)
        status, content_type, content = (
            upstream.status_code,
            upstream.headers.get("content-type"),
            upstream.content,
        )
        location = upstream.headers.get("location")
        if isinstance(answer, Canned):
            return answer.status, answer.content_type, answer.body, None
        if isinstance(answer, Rewrite):
            try:
                document = orjson.loads(content) if content else None
            except orjson.JSONDecodeError:
                document = None
            if document is not None:
                content = dump_json(rewritten(document, answer.edits))
            if answer.status is not None:
                status = answer.status
        return status, content_type, content, location
