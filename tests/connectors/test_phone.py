"""Properties of the phone normaliser: every spelling of a number is that number, and no other number is."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumber, PhoneNumberFormat, PhoneNumberType

from appconnect.connectors.phone import (
    any_same_number,
    default_region,
    number_key,
    overriding_renderings,
    render_format,
    same_number,
    search_terms,
    significant_number,
    tail_digits,
)

REGIONS = ("US", "CA", "GB", "DE", "AU", "FR", "IT", "ES", "NL", "CH", "SE", "JP", "IN", "BR", "IE", "NZ")
KINDS = (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE)


@st.composite
def valid_numbers(draw: st.DrawFn, regions: tuple[str, ...] = REGIONS) -> tuple[str, PhoneNumber]:
    """A valid number of one region: the region's example number with its last four digits redrawn."""
    region = draw(st.sampled_from(regions))
    example = phonenumbers.example_number_for_type(region, draw(st.sampled_from(KINDS)))
    assume(example is not None)
    significant = phonenumbers.national_significant_number(example)
    tail = draw(st.text("0123456789", min_size=4, max_size=4))
    number = phonenumbers.parse(f"+{example.country_code}{significant[:-4]}{tail}", None)
    assume(phonenumbers.is_valid_number(number))
    assume(phonenumbers.region_code_for_number(number) == region)
    return region, number


def e164_of(number: PhoneNumber) -> str:
    return str(phonenumbers.format_number(number, PhoneNumberFormat.E164))


def international_spellings(number: PhoneNumber) -> list[str]:
    """Spellings that carry the country: they mean this number wherever the caller is."""
    e164 = e164_of(number)
    international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    return [
        e164,
        international,
        phonenumbers.format_number(number, PhoneNumberFormat.RFC3966),
        f"{international} x123",
        f"{e164} ext. 45",
        international.replace(" ", "."),
    ]


def national_spellings(number: PhoneNumber) -> list[str]:
    """Spellings read in the number's own country: trunk prefix, bare digits, an extension."""
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    digits = "".join(ch for ch in national if ch.isdigit())
    return [
        national,
        digits,
        phonenumbers.national_significant_number(number),
        f"{national} ext. 123",
        f"{national} x12",
        f"{national}#7",
    ]


@settings(max_examples=300, deadline=None)
@given(valid_numbers())
def test_every_spelling_is_the_same_number(drawn: tuple[str, PhoneNumber]) -> None:
    _, number = drawn
    e164 = e164_of(number)
    for spelling in international_spellings(number) + national_spellings(number):
        assert same_number(spelling, e164), (spelling, e164)


@settings(max_examples=300, deadline=None)
@given(valid_numbers(), valid_numbers())
def test_a_different_number_never_matches(
    first: tuple[str, PhoneNumber], second: tuple[str, PhoneNumber]
) -> None:
    (_, a), (_, b) = first, second
    assume(number_key(e164_of(a)) != number_key(e164_of(b)))
    spellings = international_spellings(a)
    if phonenumbers.region_code_for_country_code(a.country_code) == default_region(e164_of(b)):
        # a national spelling is read in the caller's country: only then is it unambiguous
        spellings += national_spellings(a)
    for spelling in spellings:
        assert not same_number(spelling, e164_of(b)), (spelling, e164_of(b))


@settings(max_examples=300, deadline=None)
@given(valid_numbers(), st.data())
def test_a_different_number_of_the_same_country_never_matches_in_any_spelling(
    first: tuple[str, PhoneNumber], data: st.DataObject
) -> None:
    region, a = first
    _, b = data.draw(valid_numbers((region,)))
    assume(number_key(e164_of(a)) != number_key(e164_of(b)))
    for spelling in international_spellings(a) + national_spellings(a):
        assert not same_number(spelling, e164_of(b)), (spelling, e164_of(b))


@settings(max_examples=200, deadline=None)
@given(valid_numbers(), st.data())
def test_search_terms_hold_the_significant_number_and_fitting_formats(
    drawn: tuple[str, PhoneNumber], data: st.DataObject
) -> None:
    _, number = drawn
    e164 = e164_of(number)
    significant = phonenumbers.national_significant_number(number)
    # a user's overridingFormat for numbers of this length: placeholders with punctuation between them
    gaps = data.draw(st.lists(st.sampled_from(["", "", " ", "-", ".", ") ", "/"]), min_size=len(significant)))
    pattern = "(" + "".join(f"*{gap}" for gap, _ in zip(gaps, significant, strict=False))
    terms = search_terms(e164, f"{pattern},(***) ***,{pattern.replace('*', '#')}")
    assert terms[:2] == [e164, significant]
    assert len(terms) == len(set(terms))
    rendered = render_format(pattern, significant)
    assert rendered is not None and rendered in terms
    assert "".join(ch for ch in rendered if ch.isdigit()) == significant
    assert same_number(rendered, e164)
    assert significant.endswith(tail_digits(e164)) and len(tail_digits(e164)) == min(7, len(significant))


@pytest.mark.parametrize(
    ("stored", "e164"),
    [
        ("(415) 555-0100", "+14155550100"),
        ("415.555.0100", "+14155550100"),
        ("+1 415 555 0100", "+14155550100"),
        ("4155550100", "+14155550100"),
        ("1-415-555-0100", "+14155550100"),
        ("415-555-0100 x123", "+14155550100"),
        ("(415) 555-0100 ext. 123", "+14155550100"),
        ("020 7946 0018", "+442079460018"),
        ("+44 (0)20 7946 0018", "+442079460018"),
        ("0044 20 7946 0018", "+442079460018"),
        ("030 12345678", "+493012345678"),
        ("(02) 9876 5432", "+61298765432"),
        ("tel:+61-2-9876-5432;ext=9", "+61298765432"),
    ],
)
def test_the_issues_formats_match(stored: str, e164: str) -> None:
    assert same_number(stored, e164)


@pytest.mark.parametrize(
    ("stored", "e164"),
    [
        ("+44 4155 550100", "+14155550100"),  # contains the digits, another country
        ("(415) 555-0101", "+14155550100"),
        ("4155550100", "+442079460018"),
        ("14155550100123", "+14155550100"),  # the digits of a longer number
        ("not a number", "+14155550100"),
        ("", "+14155550100"),
    ],
)
def test_lookalikes_do_not_match(stored: str, e164: str) -> None:
    assert not same_number(stored, e164)


def test_overriding_formats_render_only_where_they_fit() -> None:
    assert overriding_renderings("+14155550100", "(***) ***-****, ***-***-####,+1 *** *** ****,** **") == [
        "(415) 555-0100",
        "415-555-0100",
        "+1 415 555 0100",
    ]
    assert overriding_renderings("+14155550100", "") == []
    assert search_terms("+442079460018", "(***) ***-****") == [
        "+442079460018",
        "2079460018",
        "020 7946 0018",
        "+44 20 7946 0018",
        "(207) 946-0018",
    ]


def test_a_caller_number_that_is_not_e164_matches_only_its_digits() -> None:
    assert significant_number("101") == "101"
    assert same_number("101", "101") and not same_number("1010", "101")
    assert any_same_number(["(415) 555-0199", "415 555 0100"], "+14155550100")
    assert not any_same_number([], "+14155550100")
    assert default_region("+80012345678") is None  # a non-geographic number has no national form
