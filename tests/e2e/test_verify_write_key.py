"""A wrong or rotated Segment write key drops events silently: Segment's Tracking API answers
200 to a write key no source has and discards the events, so the bridge counts them as
delivered. `verify` must see it through Segment's own count (`GET /events/volume`) and FAIL
naming the write key to look at."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops import verify
from tests.e2e.test_verify import deploy_local

pytestmark = pytest.mark.e2e

WRONG_WRITE_KEY = "rotated-away-write-key"


def test_verify_fails_naming_the_write_key_when_segment_discards_the_events(
    engine_binary: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the deployed local stack whose bridge sends with a write key no source has
    with deploy_local(tmp_path, write_key=WRONG_WRITE_KEY) as deployed:
        # WHEN verify runs
        code = verify.main(deployed.argv())
        out = capsys.readouterr().out
        stats = deployed.bridge.stats()
        segment_state = deployed.segment.state()

    # THEN the bridge believed it delivered (Segment answered 200) ...
    assert "PASS  webhook forwarded to Segment" in out, out
    assert stats["userflow_to_segment"]["delivered"] == 1
    assert not stats["userflow_to_segment"].get("dead_lettered")
    # ... but Segment's own count shows nothing, and verify fails naming the write key
    assert code == 1
    assert "FAIL  Segment counted it on the Userflow source (Public API)" in out, out
    hint = out.split("FAIL  Segment counted it")[1].splitlines()[1]
    assert hint.strip().startswith("look at:")
    assert "SEGMENT_WRITE_KEY" in hint and "write key of the Userflow source" in hint
    assert "verify: FAILED" in out
    # AND Segment really discarded it: nothing on any source, dropped as an unknown write key
    forwarded = [e for events in segment_state["events"].values() for e in events
                 if e.get("event") == "Flow Completed"]
    assert forwarded == []
    assert [d["reason"] for d in segment_state["dropped"]] == ["unknown write key"]
    # AND the wrong key itself is never printed (it is a secret like any write key)
    assert WRONG_WRITE_KEY not in out
