"""A caller is found whatever format the test CRM holds their number in, and a lookalike number is not."""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import LiveServer

_rng = random.SystemRandom()


def _four() -> str:
    return f"{_rng.randrange(10_000):04d}"


def _us() -> tuple[str, str]:
    """A fresh San Francisco number: (area+exchange, line) so each format can be spelled from it."""
    return f"415{_rng.randrange(200, 1000)}", _four()


# (case id, caller's E.164, the number as typed into the CRM), each built from fresh digits
Case = Callable[[], tuple[str, str]]


def _us_case(spell: Callable[[str, str, str], str]) -> Case:
    def build() -> tuple[str, str]:
        head, line = _us()
        return f"+1{head}{line}", spell(head[:3], head[3:], line)

    return build


CASES: dict[str, Case] = {
    "parentheses": _us_case(lambda a, x, n: f"({a}) {x}-{n}"),
    "dots": _us_case(lambda a, x, n: f"{a}.{x}.{n}"),
    "international spaced": _us_case(lambda a, x, n: f"+1 {a} {x} {n}"),
    "digits only": _us_case(lambda a, x, n: f"{a}{x}{n}"),
    "trunk 1": _us_case(lambda a, x, n: f"1-{a}-{x}-{n}"),
    "extension x": _us_case(lambda a, x, n: f"({a}) {x}-{n} x123"),
    "extension ext.": _us_case(lambda a, x, n: f"{a}-{x}-{n} ext. 123"),
    "e164": _us_case(lambda a, x, n: f"+1{a}{x}{n}"),
}


def _gb() -> tuple[str, str]:
    line = _four()
    return f"+44207946{line}", f"020 7946 {line}"


def _gb_international() -> tuple[str, str]:
    line = _four()
    return f"+44207946{line}", f"+44 (0)20 7946 {line} ext. 12"


def _de() -> tuple[str, str]:
    line = _four()
    return f"+49301234{line}", f"030 1234{line}"


def _au() -> tuple[str, str]:
    line = _four()
    return f"+6129876{line}", f"(02) 9876 {line}"


CASES.update(
    {"uk national": _gb, "uk international": _gb_international, "de national": _de, "au national": _au}
)


def _add_contact(client: httpx.Client, api_key: str, name: str, number: str) -> str:
    response = client.post(
        "/testcrm/api/v1/contacts",
        json={"name": name, "type": "contact", "phones": [{"label": "Work", "number": number}]},
        auth=(api_key, ""),
    )
    assert response.status_code == 201, response.text
    assert response.json()["phones"][0]["number"] == number  # kept as typed
    return str(response.json()["id"])


def _lookup(client: httpx.Client, jwt: str, e164: str) -> list[str]:
    response = client.get(
        "/contact",
        params={
            "phoneNumber": e164,
            "overridingFormat": "(***) ***-****",
            "isForceRefreshAccountData": "true",
        },
        headers={"Authorization": f"Bearer {jwt}"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["successful"] is True
    return [c["id"] for c in body["contact"] if not c.get("isNewContact")]


@pytest.mark.parametrize("case", list(CASES))
def test_contact_stored_in_any_format_is_found_by_its_e164_number(
    server: LiveServer, client: httpx.Client, crm_api_key: str, jwt: str, case: str
) -> None:
    e164, typed = CASES[case]()
    contact_id = _add_contact(client, crm_api_key, f"Format {case}", typed)
    assert contact_id in _lookup(client, jwt, e164)


def test_a_number_that_merely_contains_the_digits_is_not_matched(
    server: LiveServer, client: httpx.Client, crm_api_key: str, jwt: str
) -> None:
    head, line = _us()
    e164 = f"+1{head}{line}"
    right = _add_contact(client, crm_api_key, "Right Person", f"({head[:3]}) {head[3:]}-{line}")
    # the same ten digits behind another country code, and inside a longer number
    other_country = _add_contact(client, crm_api_key, "Other Country", f"+44 {head} {line}")
    longer = _add_contact(client, crm_api_key, "Longer Number", f"+1 9{head}{line}")
    # the CRM's own search is loose: it returns all three for the national number
    loose = client.get(
        "/testcrm/api/v1/contacts", params={"phone": f"{head}{line}"}, auth=(crm_api_key, "")
    ).json()["data"]
    assert {right, other_country, longer} <= {str(c["id"]) for c in loose}
    assert _lookup(client, jwt, e164) == [right]
