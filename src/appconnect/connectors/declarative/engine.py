"""The template and mapping rules of the reference's proxy engine, and the requests they render.

`{{a.b.0.c}}` looks a dot path up in the operation's context. A string that is exactly one template takes the
raw value (an object, a number, nothing); otherwise each template becomes text (nothing becomes ""). Answers
are read with dot paths against `{"body": <the answer's JSON>}` (plus `steps` for a chain). Every request goes
through the session's :class:`CrmHttp`, so the server's timeouts, retries, rate limits and error mapping apply;
`requestDefaults.timeoutSeconds` bounds each try of each request within them (it shortens, never lengthens).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from appconnect.connectors.declarative.hosts import HostNotAllowed, carries_server_secret, host_allowed
from appconnect.connectors.sdk import CrmHttp, JsonDict

log = logging.getLogger(__name__)

_ONLY_TEMPLATE = re.compile(r"^\{\{\s*([^}]+?)\s*\}\}$")
_TEMPLATE = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")
_BODYLESS = frozenset({"GET", "HEAD"})
#: methods the reference sends `{}` with when the operation names no body (a CRM may refuse a bodyless POST)
_EMPTY_BODY = frozenset({"POST", "PUT", "PATCH"})


def get_by_path(value: Any, path: str | None) -> Any:
    """The value at a dot path (`body.items.0.id`); None where any step is missing. `""`/`$`: the value itself.
    `length` of a list or a text is its length, as the reference's JavaScript property lookup gives it."""
    if not path or path == "$":
        return value
    current = value
    for part in path.split("."):
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        elif isinstance(current, list | str) and part == "length":
            current = len(current)
        else:
            return None
        if current is None:
            return None
    return current


def as_text(value: Any) -> str:
    """A value as the reference's templates (JavaScript's `String()`) write it into text: nothing is "",
    booleans are `true`/`false`, a whole float has no `.0`, a list is its items joined by `,`. An object is
    its JSON (JavaScript writes `[object Object]`, which no CRM wants)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, list):
        return ",".join(as_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def render_string(template: str, context: JsonDict, *, escape_path: bool = False) -> Any:
    """One string rendered; `escape_path` percent-encodes values that are not at its start (a URL's path: an
    id holding `/` or `?`, or being `..`, cannot reach another resource)."""
    only = _ONLY_TEMPLATE.match(template)
    if only and not escape_path:
        return get_by_path(context, only.group(1).strip())

    def text(match: re.Match[str]) -> str:
        rendered = as_text(get_by_path(context, match.group(1).strip()))
        if not escape_path or match.start() == 0:
            return rendered
        if rendered in (".", ".."):  # `/x/{{id}}` as `/x/..` is the CRM's `/`: not the record it names
            raise ValueError("a value in the URL's path is a dot segment")
        return quote(rendered, safe="")

    return _TEMPLATE.sub(text, template)


def render(value: Any, context: JsonDict) -> Any:
    """Strings rendered, objects and lists walked, everything else kept. A key whose value renders to nothing
    is left out, as the reference's JSON leaves out an undefined value (an update naming only the note does
    not send `"subject": null`)."""
    if isinstance(value, str):
        return render_string(value, context)
    if isinstance(value, list):
        return [render(v, context) for v in value]
    if isinstance(value, dict):
        rendered = {k: render(v, context) for k, v in value.items()}
        return {k: v for k, v in rendered.items() if v is not None}
    return value


def join_url(base: str, path: str) -> str:
    """The reference's join: an absolute http(s) URL stays, else one `/` between base and path."""
    if not base or path.startswith(("http://", "https://")):
        return path
    if not path:
        return base
    return f"{base.rstrip('/')}/{path.lstrip('/')}"


def auth_headers(auth: JsonDict, context: JsonDict, session_header: str) -> dict[str, str]:
    """The header the configuration's `auth` builds: its `credentialTemplate` (base64 unless `encode: none`,
    after `scheme`), else the header the server built for the session."""
    name = str(auth.get("headerName") or "Authorization")
    template = auth.get("credentialTemplate")
    if template:
        credential = as_text(render_string(str(template), context))
        if auth.get("encode") != "none":
            credential = base64.b64encode(credential.encode()).decode()
        scheme = auth.get("scheme")
        return {name: f"{scheme} {credential}" if scheme else credential}
    if session_header:
        return {name: session_header}
    return {}


def _query(params: Any) -> dict[str, Any]:
    """Query values as text, named as the reference's axios names them: a list is `key[]=a&key[]=b`, an object
    `key[sub]=v` (a list inside it `key[sub][0]=a`). A value that is nothing is left out rather than sent empty."""
    if not isinstance(params, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, list):
            out[f"{key}[]"] = [as_text(v) for v in value if v is not None]
        else:
            _flatten(out, str(key), value)
    return out


def _flatten(out: dict[str, Any], name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(out, f"{name}[{key}]", inner)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _flatten(out, f"{name}[{index}]", inner)
    else:
        out[name] = as_text(value)


@dataclass(slots=True)
class Answer:
    """One request's answer as later steps and the mapping see it."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    unreadable: bool = False

    def wire(self) -> JsonDict:
        return {"status": self.status, "body": self.body, "headers": self.headers}


@dataclass(slots=True)
class Engine:
    """Renders and sends one configuration's operations for one session."""

    config: JsonDict
    http: CrmHttp
    #: the header the server built for the session (`Basic ...` / `Bearer ...`), the fallback of `auth`
    session_header: str
    base_url: str
    #: where a request carrying the server's secret may go (`host`, `host:port`, `*.domain` entries)
    allowed_hosts: tuple[str, ...] = ()
    #: the server-held secret (`{{secretKey}}`), to recognise it wherever a template put it
    secret: str | None = None

    async def run(self, op_name: str, context: JsonDict) -> JsonDict:
        """Send the operation (one request, or its steps in order) and return the mapping's context:
        `{"body": <last answer>, "steps": {<name or index>: {"status", "body", "headers"}}}`."""
        operation: JsonDict = self.config["operations"][op_name]
        steps: list[JsonDict] = operation.get("steps") or [operation]
        answers: JsonDict = {}
        context = {**context, "steps": answers}
        last = Answer(0, None)
        for index, step in enumerate(steps):
            last = await self._send(op_name, step, context)
            answers[str(step.get("name") or index)] = last.wire()
            if step.get("name"):
                answers[str(index)] = answers[str(step["name"])]
        if last.unreadable and operation.get("responseMapping"):
            raise ValueError("the answer is not JSON")  # the connector's guard: an unexpected CRM answer
        return {"body": last.body, "steps": answers, "status": last.status}

    async def _send(self, op_name: str, request: JsonDict, context: JsonDict) -> Answer:
        defaults: JsonDict = self.config.get("requestDefaults") or {}
        method = str(request.get("method") or "GET").upper()
        url = join_url(
            self.base_url, as_text(render_string(str(request.get("url") or ""), context, escape_path=True))
        )
        headers = {k: as_text(v) for k, v in render(defaults.get("defaultHeaders") or {}, context).items()}
        headers.update({k: as_text(v) for k, v in render(request.get("headers") or {}, context).items()})
        auth: JsonDict = (
            request.get("auth")
            or self.config["operations"][op_name].get("auth")
            or (self.config.get("auth") or {})
        )
        headers.update(auth_headers(auth, context, self.session_header))
        body = None
        if method not in _BODYLESS and ("body" in request or method in _EMPTY_BODY):
            body = render(request.get("body", {}), context)
        params = _query(render(request.get("query") or {}, context)) or None
        if self._carries_secret(op_name, request, (url, headers, params, body)) and not host_allowed(
            url, self.allowed_hosts
        ):
            # the host is the user's input: not logged
            log.warning("%s: not sent, it carries the server's secret to a host not allowed", op_name)
            raise HostNotAllowed(op_name)
        response = await self.http.request(
            method,
            url,
            params=params,
            json=body,
            headers=headers,
            auth=False,  # the configuration's own header (above) replaces the session's
            idempotent=bool(request.get("idempotent", False)),
            timeout_seconds=defaults.get("timeoutSeconds"),
        )
        headers_seen = _plain_headers(response.headers)
        content = getattr(response, "content", None)
        if response.status_code == 204 or content == b"":
            return Answer(response.status_code, None, headers_seen)
        try:
            return Answer(response.status_code, response.json(), headers_seen)
        except ValueError:  # text that is not JSON: an error only where a mapping must read it
            return Answer(response.status_code, None, headers_seen, unreadable=True)

    def _carries_secret(self, op_name: str, request: JsonDict, rendered: tuple[Any, ...]) -> bool:
        """By the templates the request names, or by the secret's value anywhere in what is about to be sent."""
        if carries_server_secret(self.config, request, self.config["operations"][op_name]):
            return True
        # a secret of a few characters would be "found" in any request (a real one is longer)
        secret = str(self.secret or "")
        return len(secret) >= 8 and secret in json.dumps(rendered, default=str, ensure_ascii=False)


def _plain_headers(headers: Any) -> dict[str, str]:
    try:
        return {str(k).lower(): str(v) for k, v in dict(headers).items()}
    except (TypeError, ValueError):
        return {}
