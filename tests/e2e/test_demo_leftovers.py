"""A demo killed hard leaves resources in the stack's state whose emulators died with it; the
next demo notices, refreshes them away against its fresh emulators, and still passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.engine import Engine
from ops.target import session_path
from sandbox.demo import DemoError, refuse_if_running, run_demo
from sandbox.segment import SegmentEmulator
from sandbox.services import free_port
from sandbox.userflow import UserflowEmulator

pytestmark = pytest.mark.e2e


def test_demo_recovers_from_a_killed_run(engine_binary: Path, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    engine = Engine(state_dir=state_dir)
    engine.ensure_stack("local")
    # GIVEN a stack deployed against emulators that are gone now (as after `kill -9`)
    with SegmentEmulator() as segment, UserflowEmulator() as userflow:
        overrides = {"bridgeUrl": f"http://127.0.0.1:{free_port()}",
                     "segmentApiUrl": segment.url, "segmentTrackingUrl": segment.url,
                     "userflowApiUrl": userflow.url}
        with engine.config_copy("local", overrides) as config_file:
            assert engine.up("local", config_file).summary.count("create") == 6
    # WHEN the demo runs on that backend
    lines: list[str] = []
    outcome = run_demo(users=2, seed=5, state_dir=state_dir, wait_s=45, out=lines.append)
    # THEN it reconciles the leftovers first and then passes as usual
    assert any("earlier run" in line for line in lines)
    assert outcome.problems == []
    assert outcome.ok
    assert outcome.summaries == {"up": "create 6", "destroy": "delete 6"}


def test_a_second_demo_on_a_kept_state_refuses(tmp_path: Path) -> None:
    # GIVEN a --keep demo's session note whose bridge still answers
    session = session_path(tmp_path, "local")
    with UserflowEmulator() as serving:
        session.write_text(json.dumps({"bridgeUrl": serving.url}), encoding="utf-8")
        # WHEN another demo starts on that state THEN it refuses, saying what to do
        with pytest.raises(DemoError, match="another demo is running"):
            run_demo(users=1, state_dir=tmp_path, out=lambda line: None)
    # GIVEN the same note once that process is gone THEN it is stale and removed
    refuse_if_running(tmp_path)
    assert not session.exists()
