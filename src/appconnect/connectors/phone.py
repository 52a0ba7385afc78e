"""Phone numbers as people type them into CRMs: one place that parses, compares and derives search terms.

The client always sends the caller as E.164 (`+14155550100`); CRMs keep whatever the user typed
(`(415) 555-0100`, `020 7946 0018`, `+1 415 555 0100 x12`). Connectors search with `search_terms` (or just
`significant_number` when the CRM compares digits) and keep only the results for which `same_number` holds,
so a loose CRM search never yields a wrong person.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

#: (country calling code, national significant number): what two spellings of one number share
NumberKey = tuple[int, str]

_PLACEHOLDERS = frozenset("*#")
_NON_GEOGRAPHIC = frozenset({"001", "ZZ"})


def digits_of(text: str) -> str:
    """Only the ASCII digits: what a digits-comparing CRM search sees."""
    return "".join(ch for ch in text if "0" <= ch <= "9")


@lru_cache(maxsize=4096)  # ~1.3 MB at most; stored numbers of recent callers stay parsed
def number_key(text: str, region: str | None = None) -> NumberKey | None:
    """Parse one number in any common format; `region` lets national forms (`020 7946 0018`) parse.

    An extension (`x12`, `ext. 12`, `#12`, `;ext=12`) is dropped: it reaches the same person. Validity is
    not required, only that the text reads as a number of that country; None when it does not.
    """
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    significant = str(phonenumbers.national_significant_number(parsed))
    if not parsed.country_code or not significant:
        return None
    return int(parsed.country_code), significant


def default_region(e164: str) -> str | None:
    """The region national forms are read in: the caller's country (the main region of its calling code)."""
    key = number_key(e164)
    if key is None:
        return None
    region = phonenumbers.region_code_for_country_code(key[0])
    return None if region in _NON_GEOGRAPHIC else str(region)


def significant_number(e164: str) -> str:
    """The national significant number (`+14155550100` -> `4155550100`); the digits if it does not parse.

    Every national and international spelling of the number contains these digits in a row, so it is the
    one term a CRM that compares digits (contains or ends-with) needs.
    """
    key = number_key(e164)
    return key[1] if key is not None else digits_of(e164)


def render_format(pattern: str, digits: str) -> str | None:
    """Fill a user's overridingFormat (`(***) ***-****`) left to right with the digits; None if they don't fit.

    `*` and `#` stand for digits. A pattern with a different number of placeholders is meant for numbers of
    another length (another country), so it yields nothing rather than a wrong term.
    """
    pattern = pattern.strip()
    if sum(ch in _PLACEHOLDERS for ch in pattern) != len(digits) or not digits:
        return None
    remaining = iter(digits)
    return "".join(next(remaining) if ch in _PLACEHOLDERS else ch for ch in pattern)


def overriding_renderings(e164: str, overriding_format: str) -> list[str]:
    """The number in each of the user's comma-separated overridingFormat patterns that fits it."""
    digits = significant_number(e164)
    rendered = (render_format(pattern, digits) for pattern in overriding_format.split(","))
    return [text for text in rendered if text]


def search_terms(e164: str, overriding_format: str = "") -> list[str]:
    """Distinct terms worth searching a CRM for, most useful first.

    For a CRM that matches the stored text exactly: E.164, the national significant number, the national
    and international spellings, then the user's overridingFormat renderings. A CRM that compares digits
    needs only the first two (see `significant_number`).
    """
    terms = [e164, significant_number(e164)]
    parsed = _parsed(e164)
    if parsed is not None:
        terms.append(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL))
        terms.append(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL))
    terms.extend(overriding_renderings(e164, overriding_format))
    return list(dict.fromkeys(term for term in terms if term))


def tail_digits(e164: str, count: int = 7) -> str:
    """The last `count` digits: the widest term for a CRM whose search is contains-only and short-limited."""
    return significant_number(e164)[-count:]


def same_number(stored: str, e164: str) -> bool:
    """Whether a number as stored in a CRM is the caller's number; re-checks every loose search result.

    The stored text is read in the caller's country, so national forms with a trunk prefix match. A caller
    number that does not parse as E.164 (an internal extension) matches only the same digits.
    """
    caller = number_key(e164)
    if caller is None:
        wanted = digits_of(e164)
        return bool(wanted) and digits_of(stored) == wanted
    return number_key(stored, default_region(e164)) == caller


def any_same_number(stored: list[str] | tuple[str, ...], e164: str) -> bool:
    """Whether any of a record's stored numbers is the caller's number."""
    return any(isinstance(text, str) and same_number(text, e164) for text in stored)


@lru_cache(maxsize=1024)
def _parsed(e164: str) -> phonenumbers.PhoneNumber | None:
    """The parsed caller number for formatting; callers must not mutate it."""
    try:
        return phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
