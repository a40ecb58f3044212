"""The demo, as a newcomer runs it: exactly once both ways, nothing left behind, twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from ops.engine import REPO_ROOT, Engine
from sandbox.demo import run_demo

pytestmark = pytest.mark.e2e

# 12 Segment calls + 3 designed skips + 1 replay, 6 activities (10 Userflow events) + 1 echo
USERS = 4


def _down(url: str) -> bool:
    try:
        requests.get(url + "/__sandbox__/state", timeout=2)
    except requests.ConnectionError:
        return True
    return False


def test_demo_twice_in_a_row(engine_binary: Path, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    lines: list[str] = []

    # GIVEN a fresh backend WHEN the demo runs THEN every event arrived exactly once
    outcome = run_demo(users=USERS, seed=11, state_dir=state_dir, wait_s=45, out=lines.append)
    assert outcome.problems == []
    assert outcome.ok
    s2u, u2s = outcome.reports
    # AND the bridge skipped exactly the designed events, for the designed reasons: two
    # anonymous tracks (no_user_id), the "Flow Completed" track that came back (echo) and the
    # delivery the demo resent with its signature (replay; no redelivery by Segment here)
    assert (s2u.sent, s2u.arrived) == (3 * USERS + 3 + 1, 3 * USERS + 1)
    assert s2u.skipped == {"no_user_id": 2, "replay": 1}
    assert any("replay: resending Segment's delivery of" in line for line in lines)
    assert (u2s.sent, u2s.arrived) == (11, 10)
    assert u2s.skipped == {"echo": 1}
    assert s2u.dead_lettered == u2s.dead_lettered == 0
    # AND Segment's own counts agree: every call delivered to the bridge (its delivery
    # metrics), every forwarded Userflow event counted on the Userflow source (event volume)
    assert s2u.segment is not None and (s2u.segment.counted, s2u.segment.failed) == (15, 0)
    assert u2s.segment is not None and u2s.segment.counted == 10
    assert outcome.summaries == {"up": "create 6", "destroy": "delete 6"}
    printed = "\n".join(lines).splitlines()
    table = [line for line in printed if line.startswith(("direction", "Segment →", "Userflow →"))]
    assert len(table) == 3 and "dead-lettered" in table[0] and "p99" in table[0]
    assert "Segment's count" in table[0]
    assert "3 (no_user_id: 2, replay: 1)" in table[1] and "1 (echo: 1)" in table[2]
    # AND the processes it started are gone, the stack holds no resource
    assert all(_down(url) for url in (outcome.urls["segment"], outcome.urls["userflow"]))
    deployment = Engine(state_dir=state_dir).export("local")
    assert not (deployment.get("deployment") or {}).get("resources")

    # WHEN the demo runs again right after, from the command line, on the same backend
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "demo", "--events", str(USERS), "--seed", "12",
         "--state-dir", str(state_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, env=dict(os.environ),
        check=False,
    )
    # THEN it passes too: the first run left nothing behind
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PASS: every event arrived exactly once" in done.stdout
    assert "(no_user_id: 2, replay: 1)" in done.stdout and "(echo: 1)" in done.stdout
    assert "pulumi up: create 6" in done.stdout
    # AND the sandbox credentials it decrypted never show in what it printed
    for credential in ("sandbox-segment-token", "ak_sandbox_local"):
        assert credential not in done.stdout + done.stderr + "\n".join(lines)
