"""The central call-log composer: create bodies, update merges, settings, dates, durations, escaping."""

from __future__ import annotations

from typing import Any

import pytest

from appconnect.connectors.sdk import CallParty, CallRecord, ContactRef
from appconnect.flows.composer import compose_call_log, format_duration

AGENT = CallParty(phone_number="+16505550100", extension_number="101", name="Alice Agent")
CUSTOMER = CallParty(phone_number="+14155550123", name="Bob Buyer")
LEGS: list[dict[str, Any]] = [
    {
        "direction": "Outbound",
        "duration": 3725,
        "from": {"name": "Alice Agent", "phoneNumber": "+16505550100", "extensionNumber": "101"},
        "to": {"phoneNumber": "+14155550123"},
    },
    {
        "direction": "Outbound",
        "legType": "PstnToSip",
        "duration": 40,
        "from": {"phoneNumber": "+16505550100"},
        "to": {"name": "Carol", "extensionNumber": "102"},
    },
]


def outbound_call(**overrides: Any) -> CallRecord:
    values: dict[str, Any] = {
        "session_id": "4242",
        "direction": "Outbound",
        "start_time": "2024-03-05T14:07:09.000Z",
        "duration": 3725,
        "result": "Call connected",
        "from_party": AGENT,
        "to_party": CUSTOMER,
        "recording_link": "https://media.ringcentral.com/rec/1",
        "custom_subject": "Pricing follow-up",
        "legs": LEGS,
    }
    values.update(overrides)
    return CallRecord(**values)


def settings(**values: Any) -> dict[str, Any]:
    return {key: {"value": value} for key, value in values.items()}


def create(log_format: str, **kwargs: Any) -> str:
    kwargs.setdefault("call", outbound_call())
    kwargs.setdefault("contact", ContactRef(id="c1", phone_number="+14155550123", name="Bob Buyer"))
    return compose_call_log(log_format=log_format, **kwargs)


JOURNEY_LINES = (
    "Made call from Alice Agent, +16505550100, ext 101\nTransferred to Carol, ext 102, duration: 40 seconds"
)


# --- create -----------------------------------------------------------------------------------------------


def test_create_plain_text_body() -> None:
    body = create(
        "text/plain",
        note="Wants the annual plan",
        ai_note="Customer asked about pricing.\n",
        transcript="Alice: Hi\nBob: Hello",
        timezone_offset="-05:00",
    )
    assert body == (
        "- Note: Wants the annual plan\n"
        "- Summary: Pricing follow-up\n"
        "- Date/Time: 2024-03-05 09:07:09 AM\n"
        "- Duration: 1 hour, 2 minutes, 5 seconds\n"
        "- Result: Call connected\n"
        "- Call recording link: https://media.ringcentral.com/rec/1\n"
        "\n- AI Note:\nCustomer asked about pricing.\n--- END\n"
        "\n- Transcript:\nAlice: Hi\nBob: Hello\n--- END\n"
        f"- Call journey:\n{JOURNEY_LINES}\n--- JOURNEY END\n"
    )


def test_create_html_body() -> None:
    body = create(
        "text/html", note="Wants the annual plan", ai_note="Line one\nLine two", timezone_offset="-05:00"
    )
    assert body == (
        "<b>Agent notes</b><br>Wants the annual plan<br><br><b>Call details</b><br>"
        "<li><b>Summary</b>: Pricing follow-up</li>"
        "<li><b>Date/time</b>: 2024-03-05 09:07:09 AM</li>"
        "<li><b>Duration</b>: 1 hour, 2 minutes, 5 seconds</li>"
        "<li><b>Result</b>: Call connected</li>"
        '<li><b>Call recording link</b>: <a target="_blank" href="https://media.ringcentral.com/rec/1">open</a></li>'
        "<div><b>AI Note</b><br>Line one<br>Line two</div><br>"
        f"<div><b>Call journey</b><br>{JOURNEY_LINES.replace(chr(10), '<br>')}</div>"
    )


def test_create_markdown_body() -> None:
    body = create(
        "text/markdown", note="Wants the annual plan", transcript="Alice: Hi", timezone_offset="-05:00"
    )
    assert body == (
        "## Agent notes\nWants the annual plan\n\n## Call details\n"
        "**Summary**: Pricing follow-up\n"
        "**Date/Time**: 2024-03-05 09:07:09 AM\n"
        "**Duration**: 1 hour, 2 minutes, 5 seconds\n"
        "**Result**: Call connected\n"
        "**Call recording link**: https://media.ringcentral.com/rec/1\n"
        "### Transcript\nAlice: Hi\n"
        f"### Call journey\n{JOURNEY_LINES}\n"
    )


def test_unknown_format_gives_empty_body() -> None:
    assert create("application/json", note="x") == ""


def test_recompose_with_same_input_is_stable() -> None:
    kwargs: dict[str, Any] = {"note": "n", "ai_note": "a", "transcript": "t", "timezone_offset": "+01:00"}
    for log_format in ("text/plain", "text/html", "text/markdown"):
        first = create(log_format, **kwargs)
        assert create(log_format, existing_body=first, **kwargs) == first


# --- update merges ----------------------------------------------------------------------------------------


def test_update_replaces_duration_and_result_instead_of_duplicating() -> None:
    existing = (
        "- Note: first note\n- Summary: Pricing follow-up\n- Duration: pending\n"
        "- Result: In Progress\n- Call recording link: https://media.ringcentral.com/rec/1\n"
    )
    body = compose_call_log(
        log_format="text/plain", existing_body=existing, duration=65, result="Call connected"
    )
    assert body == (
        "- Note: first note\n- Summary: Pricing follow-up\n- Duration: 1 minute, 5 seconds\n"
        "- Result: Call connected\n- Call recording link: https://media.ringcentral.com/rec/1\n"
    )


def test_update_replaces_plain_note() -> None:
    existing = "- Note: old words\nsecond line\n- Summary: Pricing follow-up\n"
    body = compose_call_log(log_format="text/plain", existing_body=existing, note="new words")
    assert body == "- Note: new words\n- Summary: Pricing follow-up\n"


def test_update_replaces_legacy_agent_notes_label() -> None:
    body = compose_call_log(
        log_format="text/plain", existing_body="- Agent notes: old\n- Result: Missed\n", note="new"
    )
    assert body == "- Note: new\n- Result: Missed\n"


def test_update_replaces_html_note() -> None:
    existing = "<b>Agent notes</b><br>old<br><br><b>Call details</b><br><li><b>Result</b>: Missed</li>"
    body = compose_call_log(log_format="text/html", existing_body=existing, note="new")
    assert body == "<b>Agent notes</b><br>new<br><br><b>Call details</b><br><li><b>Result</b>: Missed</li>"


def test_update_replaces_markdown_note() -> None:
    existing = "## Agent notes\nold\nmore\n\n## Call details\n**Result**: Missed\n"
    body = compose_call_log(log_format="text/markdown", existing_body=existing, note="new")
    assert body == "## Agent notes\nnew\n\n## Call details\n**Result**: Missed\n"


def test_update_adds_note_above_markdown_details() -> None:
    body = compose_call_log(
        log_format="text/markdown", existing_body="## Call details\n**Result**: Missed\n", note="new"
    )
    assert body == "## Agent notes\nnew\n\n## Call details\n**Result**: Missed\n"


def test_update_appends_new_recording_link_on_its_own_line() -> None:
    body = compose_call_log(
        log_format="text/plain",
        existing_body="- Note: hi\n- Result: Call connected",
        recording_link="https://media.ringcentral.com/rec/2",
    )
    assert (
        body
        == "- Note: hi\n- Result: Call connected\n- Call recording link: https://media.ringcentral.com/rec/2\n"
    )


def test_update_replaces_pending_html_recording_with_anchor() -> None:
    existing = "<li><b>Result</b>: Call connected</li><li><b>Call recording link</b>: (pending...)</li>"
    body = compose_call_log(
        log_format="text/html", existing_body=existing, recording_link="https://media.ringcentral.com/rec/2"
    )
    assert body == (
        "<li><b>Result</b>: Call connected</li><li><b>Call recording link</b>: "
        '<a target="_blank" href="https://media.ringcentral.com/rec/2">open</a></li>'
    )


def test_html_recording_goes_inside_an_existing_list() -> None:
    body = compose_call_log(
        log_format="text/html",
        existing_body="<ul><li><b>Result</b>: Missed</li></ul>",
        recording_link="https://media.ringcentral.com/rec/2",
    )
    assert body == (
        "<ul><li><b>Result</b>: Missed</li><li><b>Call recording link</b>: "
        '<a target="_blank" href="https://media.ringcentral.com/rec/2">open</a></li></ul>'
    )


def test_html_recording_that_is_not_a_url_shows_pending() -> None:
    body = compose_call_log(log_format="text/html", recording_link="processing")
    assert body == "<li><b>Call recording link</b>: (pending...)</li>"


def test_voicemail_link_is_its_own_line() -> None:
    body = compose_call_log(
        log_format="text/plain",
        existing_body="- Result: Voicemail\n",
        voicemail_link="https://media.ringcentral.com/vm/9",
    )
    assert body == "- Result: Voicemail\n- Voicemail recording link: https://media.ringcentral.com/vm/9\n"


def test_update_replaces_ai_note_block() -> None:
    existing = "- Result: Missed\n\n- AI Note:\nold summary\n--- END\n"
    body = compose_call_log(log_format="text/plain", existing_body=existing, ai_note="new summary")
    assert body == "- Result: Missed\n\n- AI Note:\nnew summary\n--- END\n"


def test_markdown_block_stops_at_a_later_field() -> None:
    existing = "**Result**: Missed\n### AI Note\nold\n**Call recording link**: https://x/1\n"
    body = compose_call_log(log_format="text/markdown", existing_body=existing, ai_note="new")
    assert body == "**Result**: Missed\n### AI Note\nnew\n**Call recording link**: https://x/1\n"


def test_user_name_replaces_only_a_pending_value() -> None:
    on = settings(addRingCentralUserName=True)
    call = outbound_call(legs=[])
    pending = compose_call_log(
        log_format="text/plain",
        existing_body="- RingCentral user name: (pending...)\n",
        call=call,
        user_settings=on,
    )
    kept = compose_call_log(
        log_format="text/plain",
        existing_body="- RingCentral user name: Someone\n",
        call=call,
        user_settings=on,
    )
    assert pending.startswith("- RingCentral user name: Alice Agent\n")
    assert kept.startswith("- RingCentral user name: Someone\n")


def test_subject_argument_wins_over_custom_subject() -> None:
    body = compose_call_log(
        log_format="text/plain",
        existing_body="- Summary: Old\n",
        call=outbound_call(),
        subject="Renewal",
        user_settings=settings(
            addCallLogDateTime=False,
            addCallLogDuration=False,
            addCallLogResult=False,
            addCallLogRecording=False,
            addCallLogLegs=False,
        ),
    )
    assert body == "- Summary: Renewal\n"


def test_contact_number_only_on_create() -> None:
    on = settings(
        addCallLogContactNumber=True,
        addCallLogDateTime=False,
        addCallLogDuration=False,
        addCallLogResult=False,
        addCallLogRecording=False,
        addCallLogLegs=False,
        addCallLogSubject=False,
    )
    created = create("text/html", user_settings=on)
    updated = compose_call_log(log_format="text/html", call=outbound_call(), user_settings=on)
    assert created == "<li><b>Recipient phone number</b>: +14155550123</li>"
    assert updated == ""


# --- settings ---------------------------------------------------------------------------------------------


def test_settings_switch_fields_off() -> None:
    off = settings(
        addCallLogNote=False,
        addCallLogSubject=False,
        addCallLogDateTime=False,
        addCallLogDuration=False,
        addCallLogRecording=False,
        addCallLogAiNote=False,
        addCallLogTranscript=False,
        addCallLogLegs=False,
    )
    body = create("text/plain", note="n", ai_note="a", transcript="t", user_settings=off)
    assert body == "- Result: Call connected\n"


def test_optional_fields_switched_on() -> None:
    on = settings(
        addCallSessionId=True,
        addRingCentralUserName=True,
        addRingCentralNumber=True,
        addCallLogContactNumber=True,
        addCallLogSubject=False,
        addCallLogDateTime=False,
        addCallLogDuration=False,
        addCallLogResult=False,
        addCallLogRecording=False,
        addCallLogLegs=False,
    )
    body = create("text/markdown", user_settings=on)
    assert body == (
        "**Session Id**: 4242\n**RingCentral user name**: Alice Agent\n"
        "**RingCentral number and extension**: +16505550100 101\n"
        "**Contact Number**: +14155550123\n"
    )


def test_setting_without_value_uses_default() -> None:
    body = create(
        "text/plain",
        user_settings={"addCallLogResult": {"value": None}, "addCallLogDuration": {}},
        call=outbound_call(legs=[], recording_link=None, custom_subject=None, start_time=None),
    )
    assert body == "- Duration: 1 hour, 2 minutes, 5 seconds\n- Result: Call connected\n"


# --- dates ------------------------------------------------------------------------------------------------


def date_line(offset: Any = None, date_format: str | None = None, start: str = "2024-03-05T14:07:09Z") -> str:
    user = settings(logDateFormat=date_format) if date_format else {}
    return compose_call_log(
        log_format="text/plain", start_time=start, timezone_offset=offset, user_settings=user
    )


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (None, "2024-03-05 02:07:09 PM"),
        ("", "2024-03-05 02:07:09 PM"),
        ("+05:30", "2024-03-05 07:37:09 PM"),
        ("-08:00", "2024-03-05 06:07:09 AM"),
        ("-5", "2024-03-05 09:07:09 AM"),
        (5.5, "2024-03-05 07:37:09 PM"),
        ("330", "2024-03-05 07:37:09 PM"),
        (-480, "2024-03-05 06:07:09 AM"),
        ("not an offset", "2024-03-05 02:07:09 PM"),
    ],
)
def test_date_time_with_offsets(offset: Any, expected: str) -> None:
    assert date_line(offset) == f"- Date/Time: {expected}\n"


def test_date_offset_can_cross_midnight() -> None:
    assert date_line("+10:00", start="2024-12-31T20:00:00Z") == "- Date/Time: 2025-01-01 06:00:00 AM\n"


@pytest.mark.parametrize(
    ("date_format", "expected"),
    [
        ("YYYY-MM-DD HH:mm:ss", "2024-03-05 14:07:09"),
        ("D/M/YY h:mm a", "5/3/24 2:07 pm"),
        ("MM/DD/YYYY hh:mm A", "03/05/2024 02:07 PM"),
        ("[at] H:mm", "at 14:07"),
    ],
)
def test_date_format_tokens(date_format: str, expected: str) -> None:
    assert date_line(date_format=date_format) == f"- Date/Time: {expected}\n"


def test_midnight_and_noon_use_twelve() -> None:
    assert date_line(start="2024-03-05T00:05:00Z", date_format="h A") == "- Date/Time: 12 AM\n"
    assert date_line(start="2024-03-05T12:05:00Z", date_format="h A") == "- Date/Time: 12 PM\n"


def test_epoch_milliseconds_start_time() -> None:
    assert date_line(start="1709647629000") == "- Date/Time: 2024-03-05 02:07:09 PM\n"


def test_unparseable_start_time_omits_date() -> None:
    assert date_line(start="yesterday") == ""


def test_update_replaces_date_line() -> None:
    existing = "- Date/Time: 2020-01-01 01:00:00 AM\n- Result: x\n"
    body = compose_call_log(
        log_format="text/plain", existing_body=existing, start_time="2024-03-05T14:07:09Z"
    )
    assert body == "- Date/Time: 2024-03-05 02:07:09 PM\n- Result: x\n"


# --- durations --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "1 minute"),
        (61, "1 minute, 1 second"),
        (3600, "1 hour"),
        (3725, "1 hour, 2 minutes, 5 seconds"),
        (7322, "2 hours, 2 minutes, 2 seconds"),
        ("125", "2 minutes, 5 seconds"),
        ("pending", "pending"),
        (None, ""),
    ],
)
def test_format_duration(seconds: int | str | None, expected: str) -> None:
    assert format_duration(seconds) == expected


def test_zero_duration_is_logged() -> None:
    body = compose_call_log(log_format="text/plain", duration=0)
    assert body == "- Duration: 0 seconds\n"


def test_journey_singular_second() -> None:
    legs: list[dict[str, Any]] = [
        {"direction": "Inbound", "to": {"phoneNumber": "+16505550100"}},
        {"direction": "Inbound", "to": {"extensionNumber": "102"}, "duration": 1},
    ]
    body = compose_call_log(log_format="text/plain", legs=legs)
    assert body == (
        "- Call journey:\nReceived call at +16505550100\n"
        "Transferred to ext 102, duration: 1 second\n--- JOURNEY END\n"
    )


# --- escaping ---------------------------------------------------------------------------------------------


def test_html_values_are_escaped() -> None:
    call = outbound_call(
        custom_subject="Q&A <script>",
        legs=[],
        recording_link=None,
        start_time=None,
        duration=None,
        result=None,
    )
    body = compose_call_log(
        log_format="text/html", call=call, note='<img src=x onerror="alert(1)">\nbye', transcript="a < b"
    )
    assert body == (
        '<b>Agent notes</b><br>&lt;img src=x onerror="alert(1)"&gt;<br>bye<br><br>'
        "<b>Call details</b><br>"
        "<li><b>Summary</b>: Q&amp;A &lt;script&gt;</li>"
        "<div><b>Transcript</b><br>a &lt; b</div><br>"
    )


def test_html_recording_href_is_escaped() -> None:
    body = compose_call_log(log_format="text/html", recording_link='https://x/"onmouseover="x')
    assert body == (
        "<li><b>Call recording link</b>: "
        '<a target="_blank" href="https://x/&quot;onmouseover=&quot;x">open</a></li>'
    )


def test_plain_text_is_not_escaped_and_backslashes_survive() -> None:
    body = compose_call_log(
        log_format="text/plain", existing_body="- Note: old\n- Result: x\n", note=r"a < b \1 \g<0>"
    )
    assert body == "- Note: a < b \\1 \\g<0>\n- Result: x\n"


@pytest.mark.parametrize(
    "start_time",
    [
        "9999-12-31T23:59:59+00:00",
        "0001-01-01T00:00:00+00:00",
        "99999999999999999999",
        "253402300800000",
        2**62,
    ],
)
@pytest.mark.parametrize("timezone_offset", ["+14:00", "-14:00", "-23:59"])
def test_start_times_at_the_calendar_edge_do_not_crash(start_time: str | int, timezone_offset: str) -> None:
    """Converting a moment a day from year 1 or 9999 into the user's zone overflowed and failed the log."""
    for log_format in ("text/plain", "text/html", "text/markdown"):
        body = compose_call_log(
            log_format=log_format,
            start_time=start_time,  # type: ignore[arg-type]
            duration="99999999999999999999",
            timezone_offset=timezone_offset,
            note="kept",
        )
        assert "kept" in body
