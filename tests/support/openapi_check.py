"""Checks a fake CRM's requests and answers against a trimmed copy of the CRM's published OpenAPI description.

A fake written by the same hands as its connector agrees with it by construction; checking both sides of every
exchange against the CRM's own description (kept as test data, trimmed to the paths and schemas the connector
uses) makes a wrong belief fail the suite. A request that breaks the description is refused with a 400, as the
real API refuses it; an answer that breaks it is a drift of the fake: it is answered as a 500 and recorded in
`violations`, which the fake's fixture asserts empty.

Supported: OpenAPI 3.1 paths with `{param}` templates, query parameters (undeclared ones are refused, values
coerced by their schema's type), JSON request bodies and JSON answers per status, `$ref` to
`#/components/schemas/...`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from starlette.responses import Response

from tests.support.fake_crm import FakeRequest, FakeRoute, HttpError

JsonDict = dict[str, Any]
Handler = Callable[[FakeRequest], Awaitable[Response]]


@dataclass(slots=True)
class _Operation:
    template: str
    pattern: re.Pattern[str]
    spec: JsonDict


@dataclass
class OpenApiContract:
    """One trimmed description; `guard()` wraps a fake's handler so every exchange is checked."""

    path: Path
    #: Insightly's routes ignore case
    case_insensitive: bool = False
    violations: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.document: JsonDict = json.loads(self.path.read_text(encoding="utf-8"))
        self._operations: list[tuple[str, _Operation]] = []
        for template, item in self.document.get("paths", {}).items():
            regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "/?$"
            flags = re.IGNORECASE if self.case_insensitive else 0
            for method, spec in item.items():
                self._operations.append(
                    (method.upper(), _Operation(template, re.compile(regex, flags), spec))
                )
        self._validators: dict[str, Draft202012Validator] = {}

    # --- checks -------------------------------------------------------------------------------------------

    def operation(self, method: str, path: str) -> _Operation | None:
        """The described operation this request is; None when the description has no such path and method."""
        for op_method, op in self._operations:
            if op_method == method.upper() and op.pattern.match(path):
                return op
        return None

    def request_problems(self, method: str, path: str, query: dict[str, str], body: Any) -> list[str]:
        """What in a request the description does not allow (an empty list: it conforms)."""
        op = self.operation(method, path)
        if op is None:
            return [f"{method} {path}: no such operation in the description"]
        problems: list[str] = []
        declared = {p["name"]: p for p in op.spec.get("parameters", []) if p.get("in") == "query"}
        for name in query:
            if name not in declared:
                problems.append(f"query parameter {name!r} is not described")
        for name, param in declared.items():
            if name not in query:
                if param.get("required"):
                    problems.append(f"query parameter {name!r} is required")
                continue
            value = _coerce(query[name], param.get("schema", {}))
            problems += [f"query {name}: {p}" for p in self._check(param.get("schema", {}), value)]
        request_body = op.spec.get("requestBody")
        if request_body is not None:
            schema = request_body.get("content", {}).get("application/json", {}).get("schema")
            if body is None:
                if request_body.get("required"):
                    problems.append("a JSON body is required")
            elif schema is not None:
                problems += [f"body: {p}" for p in self._check(schema, body)]
        elif body is not None:
            problems.append("this operation takes no body")
        return problems

    def answer_problems(self, method: str, path: str, status: int, body: Any) -> list[str]:
        """What in an answer the description does not allow."""
        op = self.operation(method, path)
        if op is None:
            return [f"{method} {path}: no such operation in the description"]
        responses = op.spec.get("responses", {})
        described = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
        if described is None:
            return [f"status {status} is not described for {method} {op.template}"]
        schema = described.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            return []
        return [f"answer {status}: {p}" for p in self._check(schema, body)]

    def _check(self, schema: JsonDict, value: Any) -> list[str]:
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()
        validator = self._validators.get(key)
        if validator is None:
            root = {**schema, "components": self.document.get("components", {})}
            validator = self._validators[key] = Draft202012Validator(root)
        return [
            f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
            for error in validator.iter_errors(value)
        ][:5]

    # --- the fake's side ----------------------------------------------------------------------------------

    def guard(self, handler: Handler) -> Handler:
        """The handler, with the request refused (400) when it breaks the description and the answer checked."""

        async def checked(request: FakeRequest) -> Response:
            problems = self.request_problems(request.method, request.path, request.query, request.json)
            if problems:
                raise HttpError(400, "; ".join(problems))
            response = await handler(request)
            body: Any = None
            raw = bytes(response.body) if response.body else b""
            if raw and "json" in (response.headers.get("content-type") or ""):
                body = orjson.loads(raw)
            wrong = self.answer_problems(request.method, request.path, response.status_code, body)
            if wrong:
                self.violations.append(f"{request.method} {request.path}: {'; '.join(wrong)}")
                return Response("the fake's answer breaks the description", status_code=500)
            return response

        return checked

    def guard_described(self, routes: list[FakeRoute]) -> list[FakeRoute]:
        """The routes with every one the description covers guarded (others, e.g. OAuth or v1, left as they are)."""
        guarded = []
        for route in routes:
            concrete = re.sub(r"\{[^}]+\}", "1", route.path)
            if self.operation(route.method, concrete) is not None:
                route = FakeRoute(route.method, route.path, self.guard(route.handler), route.auth)
            guarded.append(route)
        return guarded


def _coerce(raw: str, schema: JsonDict) -> Any:
    """A query string value as its schema's type reads it (left as text when it does not read)."""
    kind = schema.get("type")
    if kind == "integer":
        try:
            return int(raw)
        except ValueError:
            return raw
    if kind == "boolean":
        return {"true": True, "false": False}.get(raw.lower(), raw)
    return raw
