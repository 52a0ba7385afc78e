"""`kit.defused`: customer text can carry anything, so no marker-shaped text in it may survive as the server's
own tag (the conformance suite checks the appends end to end; this checks the shapes)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appconnect.connectors.kit import conversation_marker, defused

#: what any connector's tag check or marker search looks for: `[rc-…` or the test CRM's `[rc:…`
_TAG_OPENING = re.compile(r"\[\s*rc\s*[-:]", re.IGNORECASE)


@pytest.mark.parametrize(
    "text",
    [
        "see [rc-msg-123] and [rc-call-s-9]",
        "[RC-SMS-abc]",
        "[ rc - msg-1]",
        "[rc:42] Maya",
        "[[rc-msg-1]]",
        f"quoted [{conversation_marker('conv-1')}]",
    ],
)
def test_marker_shaped_text_is_no_tag_after_defusing(text: str) -> None:
    assert _TAG_OPENING.search(text)
    safe = defused(text)
    assert not _TAG_OPENING.search(safe)
    assert safe.replace("\uff3b", "[") == text  # reads the same: only the bracket changed


@pytest.mark.parametrize("text", ["", "plain text", "[not a tag]", "[rcx-1]", "rc-msg-1", "a [b] c"])
def test_other_text_is_untouched(text: str) -> None:
    assert defused(text) == text


@given(st.text(alphabet=st.sampled_from(list("[] rcRC-:msg1\n")), max_size=40))
def test_no_text_keeps_a_tag_opening(text: str) -> None:
    safe = defused(text)
    assert not _TAG_OPENING.search(safe)
    assert len(safe) == len(text)
    assert defused(safe) == safe
