"""An interrupted demo (Ctrl-C or SIGTERM mid-traffic) destroys the stack and stops every
process it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from ops.engine import REPO_ROOT, Engine

pytestmark = pytest.mark.e2e

URLS = re.compile(r"Segment (\S+)\s+Userflow (\S+)\s+bridge \(next\) (\S+)")


def _down(url: str) -> bool:
    try:
        requests.get(url + "/health", timeout=2)
    except requests.ConnectionError:
        return True
    return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_demo_cleans_up(engine_binary: Path, tmp_path: Path, signum: int) -> None:
    state_dir = tmp_path / "state"
    demo = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "demo", "--events", "2", "--state-dir",
         str(state_dir)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert demo.stdout is not None
    urls: tuple[str, ...] = ()
    seen: list[str] = []
    deadline = time.monotonic() + 120
    try:
        # GIVEN a demo that deployed the stack and started sending traffic
        for line in demo.stdout:
            seen.append(line)
            match = URLS.search(line)
            if match:
                urls = match.groups()
            if line.startswith("④") or time.monotonic() > deadline:
                break
        assert urls and seen[-1].startswith("④"), "".join(seen)
        # WHEN it is interrupted
        demo.send_signal(signum)
        rest, _ = demo.communicate(timeout=90)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    output = "".join(seen) + rest
    # THEN it exits 130 having destroyed the stack and stopped the emulators and the bridge
    assert demo.returncode == 130, output[-3000:]
    assert "pulumi destroy" in output
    assert all(_down(url) for url in urls), urls
    deployment = Engine(state_dir=state_dir).export("local")
    assert not (deployment.get("deployment") or {}).get("resources")
