"""The shared-SMS log a shared inbox's conversation becomes: who took part, which queue got it, every entry."""

from __future__ import annotations

from typing import Any

from appconnect.flows.composer import HTML, MARKDOWN, PLAIN, compose_shared_sms


def conversation(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "owner": owner,
        "creationTime": "2026-03-12T14:00:00.000Z",
        "messages": [{"lastModifiedTime": "2026-03-13T16:30:00.000Z"}],
        "entities": [
            {"recordType": "ThreadCreatedHint", "creationTime": "2026-03-12T14:00:00.000Z"},
            {
                "recordType": "AliveMessage",
                "direction": "Inbound",
                "text": "Is <b>this</b> open?\nThanks",
                "creationTime": "2026-03-12T14:00:00.000Z",
            },
            {
                "recordType": "ThreadAssignedHint",
                "creationTime": "2026-03-12T14:01:00.000Z",
                "assignee": {"name": "Alex Rivera"},
            },
            {
                "recordType": "AliveMessage",
                "direction": "Outbound",
                "text": "Yes, until six",
                "creationTime": "2026-03-12T14:02:00.000Z",
                "author": {"name": "Alex Rivera"},
            },
            {
                "recordType": "AliveNote",
                "text": "Regular customer",
                "creationTime": "2026-03-12T14:03:00.000Z",
                "author": {"name": "Kim Ng"},
            },
        ],
    }


def test_plain_names_the_queue_the_agents_and_lists_entries_newest_first() -> None:
    subject, body = compose_shared_sms(
        PLAIN, conversation({"name": "Support", "extensionType": "Department"}), "Lena Fischer", "-05:00"
    )
    assert subject == "SMS conversation with Lena Fischer"
    assert "Started: Thursday, March 12, 2026 at 09:00 AM" in body  # the user's offset
    assert "Duration: 1 d 2 h" in body
    assert "* Lena Fischer (customer)\n* Alex Rivera\n* Kim Ng\n" in body
    assert "Receiving call queue: Support" in body
    assert "Conversation (2 messages, 1 note)" in body
    note, reply, assigned, asked = (body.index(s) for s in ("Regular", "Yes, until", "assigned to", "Is <b>"))
    assert note < reply < assigned < asked
    assert "Lena Fischer said on 2026-03-12 09:00 AM:\nIs <b>this</b> open?\nThanks" in body


def test_a_user_owner_is_named_as_owner() -> None:
    _, body = compose_shared_sms(
        PLAIN, conversation({"name": "Dana Cole", "extensionType": "User"}), "Lena", None
    )
    assert "Owner: Dana Cole" in body and "call queue" not in body


def test_html_escapes_what_people_typed() -> None:
    _, body = compose_shared_sms(HTML, conversation({"name": "Sales Queue"}), "Lena <Fischer>", "+00:00")
    assert "<li>Lena &lt;Fischer&gt; (customer)</li>" in body
    assert "Is &lt;b&gt;this&lt;/b&gt; open?<br>Thanks" in body
    assert "Receiving call queue: <b>Sales Queue</b>" in body  # "queue" in the name: a call queue


def test_markdown_subject_and_headings() -> None:
    subject, body = compose_shared_sms(MARKDOWN, conversation({"name": "Support Queue"}), "Lena", 0)
    assert subject == "**SMS conversation with Lena**"
    assert body.startswith("## Conversation summary\n")
    assert "### Conversation (2 messages, 1 note)" in body


def test_unreadable_or_edge_times_do_not_break_the_log() -> None:
    hostile = conversation({"name": "Support"})
    hostile["creationTime"] = "9999-12-31T23:59:59Z"
    hostile["messages"] = [{"lastModifiedTime": "not a time"}]
    hostile["entities"].append({"recordType": "AliveNote", "text": "lost", "creationTime": 10**20})
    _, body = compose_shared_sms(PLAIN, hostile, "Lena", "+14:00")
    assert "Conversation (2 messages, 1 note)" in body  # the note without a readable time is left out
