"""The FQL subset the providers generate and the Segment emulator evaluates."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sandbox.segment.fql import FqlError, parse_trigger, trigger_matches

IDENTIFY = {"type": "identify", "userId": "u"}
TRACK_PAID = {"type": "track", "event": "Paid"}
TRACK_OTHER = {"type": "track", "event": "Other"}
GROUP = {"type": "group", "groupId": "g"}
PAGE = {"type": "page"}


@pytest.mark.parametrize(
    ("trigger", "event", "expected"),
    [
        ('type = "identify"', IDENTIFY, True),
        ('type = "identify"', TRACK_PAID, False),
        ('type = "identify" or type = "track" or type = "group"', GROUP, True),
        ('type = "identify" or type = "track" or type = "group"', PAGE, False),
        ('type != "page"', TRACK_PAID, True),
        ('type != "page"', PAGE, False),
        ('type = "track" and event = "Paid"', TRACK_PAID, True),
        ('type = "track" and event = "Paid"', TRACK_OTHER, False),
        ('type = "track" and event != "Paid"', TRACK_OTHER, True),
        ('event = "Paid"', IDENTIFY, False),
        ('event != "Paid"', IDENTIFY, True),  # a missing field is not equal to anything
        # `and` binds tighter than `or`
        ('type = "identify" or type = "track" and event = "Paid"', IDENTIFY, True),
        ('type = "identify" or type = "track" and event = "Paid"', TRACK_OTHER, False),
        ('(type = "identify" or type = "track") and event = "Paid"', IDENTIFY, False),
        ('(type = "identify" or type = "track") and event = "Paid"', TRACK_PAID, True),
        ('((type = "group"))', GROUP, True),
        ('event = "Say \\"hi\\""', {"type": "track", "event": 'Say "hi"'}, True),
        ('  type="track"  ', TRACK_PAID, True),
    ],
)
def test_trigger_matching_table(trigger: str, event: dict[str, Any], expected: bool) -> None:
    assert trigger_matches(trigger, event) is expected


@pytest.mark.parametrize(
    ("trigger", "complaint"),
    [
        ("", "empty"),
        ('type = "track" or', "end of the trigger"),
        ('properties.plan = "pro"', "unsupported field"),
        ("type = track", "double-quoted string"),
        ('type == "track"', "double-quoted string"),
        ('type = "track")', "unexpected ')'"),
        ('(type = "track"', "expected ')'"),
        ('type = "track" xor type = "page"', "unexpected 'xor'"),
        ("type = 'track'", "unexpected character"),
        ('contains(event, "x")', "unexpected character"),
    ],
)
def test_triggers_outside_the_subset_are_refused(trigger: str, complaint: str) -> None:
    with pytest.raises(FqlError, match=re.escape(complaint)):
        parse_trigger(trigger)
