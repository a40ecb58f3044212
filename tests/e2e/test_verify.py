"""`python -m ops verify` against the deployed local stack: passes when the integration
works, fails clearly (non-zero, a FAIL line saying where to look) when the bridge is down."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ops import verify
from ops.engine import REPO_ROOT, Engine
from sandbox.demo import read_stack_secrets
from sandbox.local_bridge import LocalBridge
from sandbox.segment import SegmentEmulator
from sandbox.services import free_port
from sandbox.userflow import UserflowEmulator

pytestmark = pytest.mark.e2e

STACK = "local"


@dataclass
class Deployed:
    state_dir: Path
    segment: SegmentEmulator
    userflow: UserflowEmulator
    bridge: LocalBridge

    def argv(self) -> list[str]:
        return ["--stack", STACK, "--state-dir", str(self.state_dir),
                "--userflow-api-url", self.userflow.url, "--segment-url", self.segment.url,
                "--wait", "15"]


@contextlib.contextmanager
def deploy_local(tmp_path: Path, write_key: str | None = None) -> Iterator[Deployed]:
    """The local stack up under the real engine, with its bridge serving on the URL the
    stack's resources point at; `write_key` replaces the bridge's Segment write key."""
    state_dir = tmp_path / "state"
    port = free_port()
    with SegmentEmulator() as segment, UserflowEmulator() as userflow:
        engine = Engine(state_dir=state_dir)
        engine.ensure_stack(STACK)
        overrides = {"bridgeUrl": f"http://127.0.0.1:{port}", "segmentApiUrl": segment.url,
                     "segmentTrackingUrl": segment.url, "userflowApiUrl": userflow.url}
        with engine.config_copy(STACK, overrides) as config_file:
            engine.up(STACK, config_file)
            try:
                secrets = read_stack_secrets(engine, STACK, config_file)
                bridge = LocalBridge(port=port, env={
                    "USERFLOW_API_URL": userflow.url,
                    "USERFLOW_API_KEY": secrets.userflow_api_key,
                    "SEGMENT_TRACKING_URL": segment.url,
                    "SEGMENT_WRITE_KEY": write_key or secrets.userflow_write_key,
                    "SEGMENT_SHARED_SECRET": secrets.shared_secret,
                    "USERFLOW_WEBHOOK_SECRET": secrets.userflow_webhook_secret,
                })
                bridge.start()
                try:
                    yield Deployed(state_dir, segment, userflow, bridge)
                finally:
                    bridge.stop()
            finally:
                engine.destroy(STACK, config_file)


@pytest.fixture
def deployed(engine_binary: Path, tmp_path: Path) -> Iterator[Deployed]:
    with deploy_local(tmp_path) as running:
        yield running


def test_verify_passes_then_fails_when_the_bridge_is_down(
    deployed: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the deployed local stack WHEN verify runs THEN every check passes
    assert verify.main(deployed.argv()) == 0
    out = capsys.readouterr().out
    passes = [line for line in out.splitlines() if line.startswith("PASS")]
    assert "FAIL" not in out
    assert len(passes) == 10, out
    assert "PASS  Segment counted it on the Userflow source (Public API)" in out
    # AND the smoke-test user went through both ways and is gone again
    # (deleting a user deletes its events too, so the request log shows the event's write)
    log = [(r["method"], r["path"].split("/")[1], r["status"])
           for r in deployed.userflow.request_log()]
    assert any(m == "POST" and what == "events" and 200 <= st < 300 for m, what, st in log)
    deletes = [(what, st) for m, what, st in log if m == "DELETE"]
    assert len(deletes) == 1 and deletes[0][0] == "users" and deletes[0][1] in (200, 204)
    uf = deployed.userflow.state()
    assert not [u for u in uf["users"] if u["id"].startswith("userflow-bridge-smoke-")]
    userflow_source = next(s for s in deployed.segment.state()["sources"]
                           if s["slug"] == "userflow-local")
    forwarded = deployed.segment.state()["events"].get(userflow_source["id"], [])
    assert [e["event"] for e in forwarded] == ["Flow Completed"]
    # AND no secret was printed
    secrets = [deployed.bridge.env[k] for k in ("SEGMENT_SHARED_SECRET",
                                                "USERFLOW_WEBHOOK_SECRET", "SEGMENT_WRITE_KEY",
                                                "USERFLOW_API_KEY")]
    assert not [s for s in secrets if s in out]

    # WHEN the bridge is down THEN verify exits non-zero with FAIL lines that say where to look
    deployed.bridge.stop()
    assert verify.main(deployed.argv()) == 1
    out = capsys.readouterr().out
    assert "FAIL  bridge health" in out
    assert "look at:" in out
    assert "verify: FAILED" in out


def test_verify_fails_clearly_for_an_undeployed_stack(
    engine_binary: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a backend where the local stack was never deployed WHEN verify runs THEN FAIL
    engine = Engine(state_dir=tmp_path / "state")
    engine.ensure_stack(STACK)
    assert verify.main(["--stack", STACK, "--state-dir", str(tmp_path / "state")]) == 1
    out = capsys.readouterr().out
    assert "FAIL  stack outputs and config" in out
    assert "look at:" in out


def test_verify_is_python_m_ops_verify_and_the_sandbox_alias_still_answers() -> None:
    # GIVEN the entry point the Makefile runs and the one older docs and CI name
    for argv in (["ops", "verify", "--help"], ["sandbox", "verify", "--help"]):
        # WHEN asked for help THEN both are the same command, named as `python -m ops verify`
        done = subprocess.run([sys.executable, "-m", *argv], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("usage: python -m ops verify"), done.stdout
        assert "--stack" in done.stdout
    # AND `python -m ops` alone lists its commands and exits non-zero (nothing was run)
    listing = subprocess.run([sys.executable, "-m", "ops"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=60, check=False)
    assert listing.returncode == 2
    assert "verify" in listing.stdout
