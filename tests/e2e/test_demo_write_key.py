"""A wrong Segment write key in the local bridge: Segment's Tracking API answers 200 and
discards the events, so the bridge counts them as delivered. The demo must fail, showing
Segment's own count (its Public API's event volume) beside the bridge's."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.demo import run_demo

pytestmark = pytest.mark.e2e

WRONG_WRITE_KEY = "rotated-away-write-key"


def test_demo_fails_when_segment_silently_drops_what_the_bridge_delivered(
    engine_binary: Path, tmp_path: Path
) -> None:
    lines: list[str] = []
    # GIVEN a demo whose bridge sends to Segment with a write key no source has
    outcome = run_demo(users=2, seed=5, state_dir=tmp_path / "state", wait_s=8,
                       out=lines.append, bridge_env={"SEGMENT_WRITE_KEY": WRONG_WRITE_KEY})

    # THEN it fails
    assert not outcome.ok
    s2u, u2s = outcome.reports
    # AND the bridge believed it delivered every Userflow event to Segment ...
    delivered = int(u2s.bridge.get("delivered", 0))
    assert delivered == u2s.sent - 1  # all but the echo
    assert int(u2s.bridge.get("dead_lettered", 0)) == 0
    # ... while Segment's own count on the Userflow source is 0: named as a silent drop
    assert u2s.segment is not None and u2s.segment.counted == 0
    assert any(p.startswith("Userflow → Segment: silent drop") and "SEGMENT_WRITE_KEY" in p
               for p in outcome.problems), outcome.problems
    # AND the other direction is untouched, Segment's delivery metrics agreeing with it
    assert s2u.ok and s2u.segment is not None
    # (the replays reached the bridge, but Segment delivered each of those events once)
    replays = s2u.expected_skipped["replay"]
    assert (s2u.segment.counted, s2u.segment.failed) == (s2u.sent - replays, 0)
    # AND the table shows Segment's count beside the bridge's
    printed = "\n".join(lines).splitlines()
    header = next(line for line in printed if line.startswith("direction"))
    assert "Segment's count" in header
    row = next(line for line in printed if line.startswith("Userflow →"))
    start = header.index("Segment's count")
    assert row[start:].split()[0] == "0"
    assert WRONG_WRITE_KEY not in "\n".join(lines)
