"""Where a declarative request carrying the server's own secret may go.

`{{secretKey}}` is the deployment's secret, not the user's: a configuration whose URL lets a template (the login
`{{hostname}}`, a value of an answer) decide the scheme, host or port would send it wherever the user points it.
The loader refuses such a configuration unless `meta.allowedHosts` (extension) lists the hosts it may reach, and
the engine checks every request carrying the secret against the configuration's fixed hosts and that list. The
user's own key may go to the user's own host: that is what `{{hostname}}` is for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from appconnect.outbound.types import CrmHttpError

JsonDict = dict[str, Any]

#: template variables holding a credential of the server rather than of the user
SERVER_SECRETS = frozenset({"secretKey"})

_TEMPLATE = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class HostNotAllowed(CrmHttpError):
    """A request carrying the server's secret was about to go to a host outside the configuration's list; it
    was not sent, so the user gets the operation's "no answer" message and nothing is half-done."""

    def __init__(self, operation: str) -> None:
        super().__init__(None, method=operation, url="(a host outside the allowed hosts)")


def template_names(value: Any) -> set[str]:
    """The first name of every `{{...}}` template in a part of a configuration."""
    if isinstance(value, str):
        return {m.group(1).split(".", 1)[0] for m in _TEMPLATE.finditer(value)}
    if isinstance(value, dict):
        return set().union(*(template_names(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(template_names(v) for v in value)) if value else set()
    return set()


def _is_absolute(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def host_is_templated(url: str) -> bool:
    """Whether a template can decide the scheme, host or port of a URL template (one starting with a template
    may render to any absolute URL: the engine keeps an absolute URL as it is)."""
    text = url.strip()
    if text.startswith("{{"):
        return True
    if not _is_absolute(text):
        return False
    authority = re.split(r"[/?#]", text.split("//", 1)[1], maxsplit=1)[0]
    return "{{" in authority


def requests_of(config: JsonDict) -> Iterator[tuple[str, JsonDict, JsonDict]]:
    """Every request a configuration can send: (its path in the file, the request, its operation)."""
    for op_name, operation in (config.get("operations") or {}).items():
        steps = operation.get("steps")
        if steps:
            for index, step in enumerate(steps):
                yield f"operations.{op_name}.steps.{index}", step, operation
        else:
            yield f"operations.{op_name}", operation, operation


def carries_server_secret(config: JsonDict, request: JsonDict, operation: JsonDict) -> bool:
    """Whether a request's URL, headers, query, body or auth names a server-held secret."""
    defaults: JsonDict = config.get("requestDefaults") or {}
    auth = request.get("auth") or operation.get("auth") or config.get("auth") or {}
    parts = [
        request.get("url"),
        defaults.get("defaultHeaders"),
        request.get("headers"),
        request.get("query"),
        request.get("body"),
        auth.get("credentialTemplate") if isinstance(auth, dict) else None,
    ]
    return bool(template_names(parts) & SERVER_SECRETS)


def secret_host_errors(config: JsonDict) -> list[str]:
    """A request carrying the server's secret whose host a template decides, without `meta.allowedHosts`."""
    if (config.get("meta") or {}).get("allowedHosts"):
        return []
    base = str((config.get("requestDefaults") or {}).get("baseUrl") or "")
    problems: list[str] = []
    for where, request, operation in requests_of(config):
        if not carries_server_secret(config, request, operation):
            continue
        url = str(request.get("url") or "")
        if _is_absolute(url.strip()) or url.strip().startswith("{{"):
            templated, named = host_is_templated(url), f"{where}.url"
        else:
            templated, named = host_is_templated(base), "requestDefaults.baseUrl"
        if templated:
            problems.append(
                f"{named}: a template decides the host of {where}, which sends {{{{secretKey}}}}; "
                "fix the host or list meta.allowedHosts"
            )
    return problems


def fixed_hosts(config: JsonDict, base_url_setting: str | None) -> list[str]:
    """The `host:port` entries a configuration names with no template: its base URL (the deployment's setting
    replaces `requestDefaults.baseUrl`) and its absolute operation URLs."""
    base = base_url_setting or str((config.get("requestDefaults") or {}).get("baseUrl") or "")
    urls = [base, *(str(request.get("url") or "") for _, request, _ in requests_of(config))]
    found: list[str] = []
    for url in urls:
        if _is_absolute(url.strip()) and not host_is_templated(url):
            address = _address(url.strip())
            if address is not None and address not in found:
                found.append(address)
    return found


def _address(url: str) -> str | None:
    """`host:port` of an absolute URL (the scheme's port when none is written); None when it has no host."""
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return f"{parts.hostname.lower().rstrip('.')}:{port}"


def host_allowed(url: str, patterns: Iterable[str]) -> bool:
    """Whether a URL's host and port match an entry: `host` (the scheme's own port), `host:port`, or
    `*.domain` / `*.domain:port` (any name under the domain, not the domain itself)."""
    address = _address(url)
    if address is None:
        return False
    host, _, port = address.rpartition(":")
    scheme_port = str(_DEFAULT_PORTS.get(urlsplit(url).scheme.lower(), ""))
    for pattern in patterns:
        name, _, wanted_port = pattern.strip().lower().partition(":")
        if (wanted_port or scheme_port) != port:
            continue
        if name.startswith("*."):
            if host.endswith(name[1:]) and host != name[2:]:
                return True
        elif host == name.rstrip("."):
            return True
    return False
