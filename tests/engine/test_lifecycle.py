"""The local stack under the real Pulumi engine: preview, up, preview (no changes), refresh
(also after an out-of-band deletion), destroy, against in-process emulators; then no token,
write key or shared secret in plaintext in the state backend or the engine's output."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from ops.engine import Engine, RunResult, stack_file
from sandbox.segment import SegmentEmulator
from sandbox.services import free_port
from sandbox.userflow import UserflowEmulator

pytestmark = pytest.mark.engine

STACK = "local"
# The stack, the integration component, two sources, the destination, the Userflow
# subscription (docs/ARCHITECTURE.md: the dynamic resources of the integration).
RESOURCES = 6
DYNAMIC = 4


@dataclass
class Sandbox:
    engine: Engine
    segment: SegmentEmulator
    userflow: UserflowEmulator
    config_file: Path
    runs: list[RunResult] = field(default_factory=list)

    def run(self, op: str) -> RunResult:
        result: RunResult = getattr(self.engine, op)(STACK, self.config_file)
        self.runs.append(result)
        return result

    def counts(self) -> dict[str, int]:
        seg, uf = self.segment.state(), self.userflow.state()
        return {"sources": len(seg["sources"]), "destinations": len(seg["destinations"]),
                "subscriptions": len(seg["subscriptions"]),
                "webhook_subscriptions": len(uf["webhook_subscriptions"])}


@pytest.fixture
def sandbox(engine_binary: Path, tmp_path: Path) -> Iterator[Sandbox]:
    with SegmentEmulator() as segment, UserflowEmulator() as userflow:
        engine = Engine(state_dir=tmp_path / "state")
        engine.ensure_stack(STACK)
        overrides = {"bridgeUrl": f"http://127.0.0.1:{free_port()}",
                     "segmentApiUrl": segment.url, "segmentTrackingUrl": segment.url,
                     "userflowApiUrl": userflow.url}
        with engine.config_copy(STACK, overrides) as config_file:
            box = Sandbox(engine, segment, userflow, config_file)
            try:
                yield box
            finally:
                # Never leave a half-done stack behind in a failing test's backend.
                if any(box.counts().values()):
                    engine.destroy(STACK, config_file)


def _secret_values(box: Sandbox) -> dict[str, str]:
    """Every credential the stack handles, read from the emulators (the source of truth)."""
    seg, uf = box.segment.state(), box.userflow.state()
    values = {"segment token": "sandbox-segment-token", "userflow api key": "ak_sandbox_local"}
    for source in seg["sources"]:
        for i, key in enumerate(source["writeKeys"]):
            values[f"write key {source['slug']}#{i}"] = key
    for destination in seg["destinations"]:
        values[f"shared secret {destination['id']}"] = destination["settings"]["sharedSecret"]
    for subscription in uf["webhook_subscriptions"]:
        values[f"userflow webhook secret {subscription['id']}"] = subscription["secret"]
    return values


def _backend_text(state_dir: Path) -> str:
    """Everything the file backend wrote: the state, its backups and history."""
    return "\n".join(p.read_text(encoding="utf-8", errors="replace")
                     for p in sorted(state_dir.rglob("*")) if p.is_file())


def test_lifecycle_and_no_plaintext_secrets(sandbox: Sandbox) -> None:
    committed = stack_file(STACK).read_bytes()
    empty = {"sources": 0, "destinations": 0, "subscriptions": 0, "webhook_subscriptions": 0}
    full = {"sources": 2, "destinations": 1, "subscriptions": 1, "webhook_subscriptions": 1}

    # GIVEN empty emulators WHEN previewing THEN everything would be created, nothing is
    preview = sandbox.run("preview")
    assert preview.summary.count("create") == RESOURCES, preview.summary
    assert sandbox.counts() == empty

    # WHEN up THEN every resource is created, in the emulators too
    up = sandbox.run("up")
    assert up.summary.count("create") == RESOURCES, up.summary
    assert up.summary.changes == RESOURCES
    assert sandbox.counts() == full
    outputs = sandbox.engine.outputs(STACK)
    seg_state = sandbox.segment.state()
    assert {outputs["appSourceId"], outputs["userflowSourceId"]} == {
        s["id"] for s in seg_state["sources"]}
    destination = seg_state["destinations"][0]
    assert destination["sourceId"] == outputs["appSourceId"]
    assert seg_state["subscriptions"][0]["settings"]["url"] == outputs["bridgeUrl"] + "/segment"
    assert (sandbox.userflow.state()["webhook_subscriptions"][0]["url"]
            == outputs["bridgeUrl"] + "/userflow")

    # WHEN previewing again THEN no changes, and no Public API write happened
    writes_before = _writes(sandbox)
    again = sandbox.run("preview")
    assert again.summary.changes == 0, again.summary
    assert again.summary.count("same") == RESOURCES
    assert _writes(sandbox) == writes_before

    # WHEN refreshing an unchanged stack THEN nothing changes
    refreshed = sandbox.run("refresh")
    assert refreshed.summary.changes == 0, refreshed.summary

    # WHEN the Userflow subscription is deleted out of band THEN refresh notices, up recreates
    subscription_id = outputs["userflowSubscriptionId"]
    reply = requests.delete(f"{sandbox.userflow.url}/webhook_subscriptions/{subscription_id}",
                            headers={"Authorization": "Bearer ak_sandbox_local",
                                     "Userflow-Version": "2020-01-03"}, timeout=10)
    assert reply.status_code in (200, 204)
    drift = sandbox.run("refresh")
    assert drift.summary.count("delete") == 1, drift.summary
    healed = sandbox.run("up")
    assert healed.summary.count("create") == 1, healed.summary
    assert sandbox.counts() == full

    # Every credential, read from the emulators before destroy.
    secrets = _secret_values(sandbox)
    assert len(secrets) >= 2 + 2 + 1 + 1
    state_after_up = _backend_text(sandbox.engine.state_dir or Path())
    assert "ciphertext" in state_after_up  # the secret outputs are there, encrypted

    # WHEN destroying THEN everything is deleted and the emulators are empty
    destroyed = sandbox.run("destroy")
    assert destroyed.summary.count("delete") == RESOURCES, destroyed.summary
    assert sandbox.counts() == empty

    # THEN no credential appears in plaintext in the backend or in anything the engine printed
    assert sandbox.engine.state_file(STACK).exists()
    backend = _backend_text(sandbox.engine.state_dir or Path()) + state_after_up
    printed = "\n".join(r.stdout + r.stderr for r in sandbox.runs)
    leaks = [name for name, value in secrets.items() if value in backend or value in printed]
    assert leaks == []
    # AND the runs read a temporary copy of the stack file, never rewrote the committed one
    assert stack_file(STACK).read_bytes() == committed


def _writes(box: Sandbox) -> list[Any]:
    logs = box.segment.request_log() + box.userflow.request_log()
    return [(r["method"], r["path"]) for r in logs if r["method"] != "GET"]
