"""The outbound client's JSON read refuses a CRM answer nested deeper than the server can pass on.

The server's JSON writer stops at 254 levels and orjson's reader at 1024: an answer in between was read, and a
connector that passed part of it into a reply (`additionalInfo`, `fullLogResponse`) made a 500. The read refuses
it as the CRM answer error every flow maps to a contract answer, whatever the connector.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from appconnect.outbound.client import (
    MAX_ANSWER_DEPTH,
    CrmHttpClient,
    CrmTransport,
    RetryPolicy,
    build_transport_client,
    read_json,
)
from appconnect.outbound.types import CrmAnswerError, CrmHttpError
from tests.support.raw_http import RawServer


@pytest.fixture
async def transport() -> AsyncIterator[CrmTransport]:
    made = build_transport_client(connect_timeout=2.0, read_timeout=2.0)
    try:
        yield made
    finally:
        await made.aclose()


def client(transport: CrmTransport, crm: RawServer, attempts: int = 3) -> CrmHttpClient:
    retry = RetryPolicy(attempts=attempts, base_delay=0.01, budget_seconds=2.0)
    return CrmHttpClient(transport, base_url=crm.url, retry=retry)


def nested(depth: int, *, opener: bytes = b"[", closer: bytes = b"]", leaf: bytes = b"1") -> bytes:
    return opener * depth + leaf + closer * depth


def json_answer(body: bytes, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


@pytest.mark.parametrize(
    "body",
    [
        nested(100_000),  # past orjson's reader (1024 levels)
        nested(300, opener=b'{"more":', closer=b"}"),  # read by orjson, past its writer (254)
        nested(MAX_ANSWER_DEPTH + 1),
        b'{"data":[{"id":1,"extra":' + nested(MAX_ANSWER_DEPTH) + b"}]}",  # deep inside an ordinary answer
    ],
    ids=["100k-arrays", "300-objects", "one-past-the-bound", "inside-a-record"],
)
async def test_json_nested_past_the_bound_is_a_crm_answer_error(transport: CrmTransport, body: bytes) -> None:
    async with RawServer([json_answer(body), json_answer(body)]) as crm:
        http = client(transport, crm)
        answer = await http.request("GET", "/contacts")
        with pytest.raises(CrmAnswerError) as caught:
            answer.json()
        with pytest.raises(CrmAnswerError):
            await http.get_json("/contacts")
    assert caught.value.reason == f"JSON nested deeper than {MAX_ANSWER_DEPTH} levels"
    assert caught.value.outcome_unknown is False
    assert "more" not in str(caught.value)  # the CRM's body is never quoted


async def test_json_at_the_bound_is_read(transport: CrmTransport) -> None:
    body = b'{"data":' + nested(MAX_ANSWER_DEPTH - 1) + b"}"
    async with RawServer([json_answer(body)]) as crm:
        value = await client(transport, crm).get_json("/contacts")
    for _ in range(MAX_ANSWER_DEPTH):
        value = value["data"] if isinstance(value, dict) else value[0]
    assert value == 1


def test_an_ordinary_answer_with_many_brackets_is_read() -> None:
    """More brackets than the bound, but shallow: the cheap count alone cannot clear it, the check must."""
    records = b",".join(
        b'{"id":%d,"phones":[{"number":"+1415555%04d"}],"tags":[]}' % (n, n) for n in range(200)
    )
    assert len(read_json(b'{"data":[' + records + b"]}")["data"]) == 200


async def test_an_error_answer_nested_too_deep_is_kept_as_text(transport: CrmTransport) -> None:
    """An error's body is read for its message: a deep one is not read, and the error is the CRM's 400."""
    async with RawServer([json_answer(nested(300), "400 Bad Request")]) as crm:
        with pytest.raises(CrmHttpError) as caught:
            await client(transport, crm).request("POST", "/contacts", json={"name": "Ada"})
    assert caught.value.status == 400 and not isinstance(caught.value, CrmAnswerError)
    assert isinstance(caught.value.body, str) and caught.value.body.startswith("[[[")


def test_text_that_is_not_json_is_still_a_value_error() -> None:
    """Connectors tell 'not JSON' (a ValueError, often expected: an HTML page) from 'too deep'."""
    with pytest.raises(ValueError):
        read_json(b"<html>Sign in</html>")
