"""RingSense in a composed call log: each part behind its own setting, replaced (not repeated) on update."""

from __future__ import annotations

import pytest

from appconnect.connectors.sdk import RingSense
from appconnect.flows.composer import HTML, MARKDOWN, PLAIN, compose_call_log

SENSE = RingSense(
    transcript="Agent: hello\nCaller: hi",
    summary="Caller wants a quote",
    ai_score="87",
    bulleted_summary="- quote\n- callback",
    link="https://ringsense.example/r/1",
)


def test_plain_text_carries_every_part() -> None:
    body = compose_call_log(log_format=PLAIN, note="n", ring_sense=SENSE)
    assert "- ACE transcript:\nAgent: hello\nCaller: hi\n--- END" in body
    assert "- ACE summary:\nCaller wants a quote\n--- END" in body
    assert "- Call score: 87" in body
    assert "- ACE bulleted summary:\n- quote\n- callback\n--- END" in body
    assert "- ACE recording link: https://ringsense.example/r/1" in body


@pytest.mark.parametrize("fmt", [PLAIN, HTML, MARKDOWN])
def test_an_update_replaces_each_part(fmt: str) -> None:
    first = compose_call_log(log_format=fmt, note="n", ring_sense=SENSE)
    newer = RingSense(summary="Caller signed", ai_score="91")
    again = compose_call_log(log_format=fmt, existing_body=first, ring_sense=newer)
    assert "Caller signed" in again and "Caller wants a quote" not in again
    assert "91" in again and "87" not in again
    assert again.count("ACE summary") == 1 and again.count("Call score") == 1
    assert "callback" in again  # the parts not sent again stay


def test_a_setting_turns_a_part_off() -> None:
    settings = {"addCallLogRingSenseRecordingTranscript": {"value": False}}
    body = compose_call_log(log_format=PLAIN, ring_sense=SENSE, user_settings=settings)
    assert "ACE transcript" not in body and "ACE summary" in body


def test_html_escapes_the_summary() -> None:
    body = compose_call_log(log_format=HTML, ring_sense=RingSense(summary="<b>x</b> & y"))
    assert "<div><b>ACE summary</b><br>&lt;b&gt;x&lt;/b&gt; &amp; y</div>" in body
