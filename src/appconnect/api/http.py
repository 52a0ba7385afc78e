"""Request parsing and response building shared by the routes."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from appconnect.api.session import Caller, read_caller
from appconnect.flows.reply import ClientError, Reply
from appconnect.flows.requests import InvalidField, check_json
from appconnect.flows.services import Services

Model = TypeVar("Model", bound=BaseModel)

REFRESHED_HEADER = "x-refreshed-jwt-token"


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def caller_of(request: Request) -> Caller:
    caller = read_caller(request, services_of(request).tokens)
    request.state.caller = caller
    return caller


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def text_response(text: str, status: int = 200) -> Response:
    """Plain text, never HTML: stored values (the login hostname) must not run as script in a browser."""
    return Response(text, status_code=status, media_type="text/plain; charset=utf-8")


def contract_text(text: str, status: int = 400) -> Response:
    """One of the contract's fixed texts (`Platform not found`, `Please go to Settings and authorize CRM
    platform`), typed as the reference sends a string: `text/html; charset=utf-8`. Only constant texts come
    here, never a value from a request or the database, and the API's CSP forbids any script besides."""
    return Response(text, status_code=status, media_type="text/html; charset=utf-8")


def respond(request: Request, reply: Reply) -> Response:
    """Serialise a flow's reply; carry the rotated JWT on every answer."""
    if isinstance(reply.body, str):
        response = text_response(reply.body, reply.status)
    elif reply.body is None:
        response = Response(b"", status_code=reply.status)
    else:
        response = json_response(reply.body, reply.status)
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is not None and caller.refreshed_token:
        response.headers[REFRESHED_HEADER] = caller.refreshed_token
    return response


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        problems.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
    return "Invalid request body: " + "; ".join(problems)


async def parse_body(request: Request, model: type[Model]) -> Model:
    """The JSON body as `model`; malformed JSON or wrong types are a 400 `{error}` that names the field."""
    raw = await request.body()
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise ClientError("Invalid request body: not valid JSON", as_json=True) from exc
    if not isinstance(data, dict):
        raise ClientError("Invalid request body: expected a JSON object", as_json=True)
    try:
        check_json(data)
    except InvalidField as exc:
        raise ClientError(f"Invalid request body: {exc}", as_json=True) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ClientError(_describe(exc), as_json=True) from exc
