"""All four secrets rotated under traffic, in the sandbox, with the real engine.

The local stack on in-process emulators, the local bridge (the Lambda code on moto) at the
stack's `bridgeUrl`, and events flowing both ways the whole time: the app's tracks through
Segment to Userflow, Userflow's flow events through the bridge to Segment. Each rotation is
one config change, then `pulumi up` runs spaced by `rotationOverlapSeconds`, until preview
shows no change. After each `up` the bridge's Secrets Manager secrets are given the stack's
values, as the `SecretVersion` resources of an AWS stack do in the same `up`
(`__main__.py`: the accepted lists of the destination and the webhook, the write key, the
Userflow API key from config).

Then: no delivery refused (no 4xx at the bridge, from Segment or from Userflow), every event
arrived exactly once, and each old secret is refused.
"""

from __future__ import annotations

import base64
import collections
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge_code.signatures import sign_segment, sign_userflow
from ops.engine import Engine, RunResult, resource_outputs
from sandbox.local_bridge import LocalBridge
from sandbox.segment import SegmentEmulator
from sandbox.services import free_port
from sandbox.userflow import SANDBOX_API_KEY, UserflowEmulator

pytestmark = pytest.mark.e2e

STACK = "local"
OVERLAP_S = 3
TTL_S = 1
# After an `up`, wait out the overlap and one more cache period before the next step.
STEP_WAIT_S = OVERLAP_S + TTL_S + 0.5
NEW_API_KEY = "ak_sandbox_rotated"
USERS = [f"rotation-user-{i}" for i in range(4)]
PROBE_EVENT = "Rotation Probe"
HTTP_TIMEOUT_S = 10


@dataclass
class Traffic:
    """Both directions at a steady pace, from a background thread, until stopped."""

    segment_url: str
    userflow_url: str
    app_write_key: str
    sent_refs: list[str] = field(default_factory=list)
    simulated: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rotation-traffic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        auth = base64.b64encode(f"{self.app_write_key}:".encode()).decode()
        i = 0
        while not self._stop.wait(0.2):
            user = USERS[i % len(USERS)]
            ref = f"ref-{i}"
            try:
                reply = requests.post(
                    f"{self.segment_url}/v1/track", timeout=HTTP_TIMEOUT_S,
                    headers={"Authorization": f"Basic {auth}"},
                    json={"userId": user, "event": PROBE_EVENT, "messageId": f"m-{ref}",
                          "properties": {"ref": ref}})
                reply.raise_for_status()
                self.sent_refs.append(ref)
                if i % 2 == 0:
                    reply = requests.post(
                        f"{self.userflow_url}/__sandbox__/simulate", timeout=HTTP_TIMEOUT_S,
                        json={"user_id": user, "activity": "flow"})
                    reply.raise_for_status()
                    self.simulated += 1
            except requests.RequestException as error:
                self.errors.append(f"{type(error).__name__}: {error}")
            i += 1


@dataclass
class Rig:
    engine: Engine
    segment: SegmentEmulator
    userflow: UserflowEmulator
    bridge_port: int
    overrides: dict[str, str]
    api_key: str = SANDBOX_API_KEY
    bridge: LocalBridge | None = None
    runs: list[RunResult] = field(default_factory=list)

    def run(self, op: str) -> RunResult:
        """`op` on a fresh copy of the stack file with the current overrides and API key."""
        with self.engine.config_copy(STACK, self.overrides) as config_file:
            if self.api_key != SANDBOX_API_KEY:
                self.engine.command(["config", "set", "--secret", "--stack", STACK,
                                     "--config-file", str(config_file),
                                     "userflow-segment:userflowApiKey", self.api_key])
            result: RunResult = getattr(self.engine, op)(STACK, config_file)
        self.runs.append(result)
        return result

    def stack_values(self) -> dict[str, Any]:
        deployment = self.engine.export(STACK, show_secrets=True)
        sources = {o["slug"]: o for o in resource_outputs(deployment, "segment:Source")}
        [destination] = resource_outputs(deployment, "segment:WebhookDestination")
        [webhook] = resource_outputs(deployment, "userflow:WebhookSubscription")
        return {"app": sources["app-local"], "userflow": sources["userflow-local"],
                "destination": destination, "webhook": webhook}

    def bridge_secrets(self) -> dict[str, str]:
        """The bridge's four secrets as `__main__.py` hands them to `store_secret_values`."""
        values = self.stack_values()
        return {"SEGMENT_SHARED_SECRET": values["destination"]["accepted_shared_secrets"],
                "USERFLOW_WEBHOOK_SECRET": values["webhook"]["accepted_secrets"],
                "SEGMENT_WRITE_KEY": values["userflow"]["write_key"],
                "USERFLOW_API_KEY": self.api_key}

    def sync_bridge(self) -> None:
        """What the `SecretVersion` resources do on AWS: put the new secret strings."""
        assert self.bridge is not None and self.bridge.runtime is not None
        settings, client = self.bridge.runtime.settings, self.bridge.runtime.aws.secretsmanager
        arns = {"SEGMENT_SHARED_SECRET": settings.segment_shared_secret_arn,
                "USERFLOW_WEBHOOK_SECRET": settings.userflow_webhook_secret_arn,
                "SEGMENT_WRITE_KEY": settings.segment_write_key_arn,
                "USERFLOW_API_KEY": settings.userflow_api_key_arn}
        for name, value in self.bridge_secrets().items():
            client.put_secret_value(SecretId=arns[name], SecretString=value)

    def up_and_sync(self) -> RunResult:
        result = self.run("up")
        self.sync_bridge()
        return result

    def rotate(self, key: str, max_ups: int = 4) -> list[RunResult]:
        """Bump `key`, then `up` (each after the overlap) until preview shows no change."""
        self.overrides[key] = str(int(self.overrides.get(key, "0")) + 1)
        ups = [self.up_and_sync()]
        while self.run("preview").summary.changes:
            assert len(ups) < max_ups, f"{key}: still changing after {len(ups)} ups"
            time.sleep(STEP_WAIT_S)
            ups.append(self.up_and_sync())
        return ups


@pytest.fixture
def rig(engine_binary: Path, tmp_path: Path) -> Iterator[Rig]:
    with SegmentEmulator() as segment, UserflowEmulator() as userflow:
        engine = Engine(state_dir=tmp_path / "state")
        engine.ensure_stack(STACK)
        port = free_port()
        overrides = {"bridgeUrl": f"http://127.0.0.1:{port}", "segmentApiUrl": segment.url,
                     "segmentTrackingUrl": segment.url, "userflowApiUrl": userflow.url,
                     "rotationOverlapSeconds": str(OVERLAP_S), "secretsTtlSeconds": str(TTL_S)}
        box = Rig(engine, segment, userflow, port, overrides)
        try:
            yield box
        finally:
            if box.bridge is not None:
                box.bridge.stop()
            userflow.api_keys.add(box.api_key)
            if segment.state()["sources"] or userflow.state()["webhook_subscriptions"]:
                box.run("destroy")


def _userflow_api(userflow: UserflowEmulator, key: str, method: str, path: str,
                  body: Any) -> None:
    reply = requests.request(method, userflow.url + path, json=body, timeout=HTTP_TIMEOUT_S,
                             headers={"Authorization": f"Bearer {key}",
                                      "Userflow-Version": "2020-01-03"})
    assert reply.status_code < 300, reply.text


def _wait_quiet(rig: Rig, timeout_s: float = 60.0) -> None:
    assert rig.bridge is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seg, uf = rig.segment.state(), rig.userflow.state()
        if (not seg["deliveries_pending"] and not uf["deliveries_pending"]
                and not rig.bridge.stats()["queues"]["queue"]):
            return
        time.sleep(0.25)
    pytest.fail("deliveries still pending after the traffic stopped")


def _refused(status_counts: collections.Counter[int]) -> dict[int, int]:
    return {status: n for status, n in status_counts.items() if 400 <= status < 500}


@pytest.mark.timeout(900)
def test_every_secret_rotates_under_traffic_with_nothing_refused_lost_or_doubled(
    rig: Rig,
) -> None:
    # GIVEN the stack up, the bridge running with its secrets, users known to Userflow
    created = rig.run("up")
    assert created.summary.count("create") == 6, created.summary
    first = rig.stack_values()
    rig.bridge = LocalBridge(port=rig.bridge_port, env={
        "USERFLOW_API_URL": rig.userflow.url, "SEGMENT_TRACKING_URL": rig.segment.url,
        "SECRETS_TTL_SECONDS": str(TTL_S), **rig.bridge_secrets()}).start()
    for user in USERS:
        _userflow_api(rig.userflow, SANDBOX_API_KEY, "POST", "/users", {"id": user})
    traffic = Traffic(rig.segment.url, rig.userflow.url, first["app"]["write_key"])
    traffic.start()
    try:
        time.sleep(1)

        # Userflow API key: the user makes a new key in Userflow, sets it, runs `up`; the
        # bridge re-reads its secret; the user revokes the old key.
        rig.userflow.api_keys.add(NEW_API_KEY)
        rig.api_key = NEW_API_KEY
        rig.up_and_sync()
        time.sleep(STEP_WAIT_S)
        rig.userflow.api_keys.discard(SANDBOX_API_KEY)
        refs_before_revocation = len(traffic.sent_refs)

        # Segment shared secret: switch (the staged one) then drop the old one.
        assert len(rig.rotate("sharedSecretRotation")) == 2
        # Segment write key: mint and hand out, then remove the old one from the source.
        assert len(rig.rotate("writeKeyRotation")) == 2
        # Userflow webhook secret: replacement (disabled), switch, drop the old secret. The
        # providers call Userflow here with the new API key only (the old one is revoked).
        assert len(rig.rotate("userflowWebhookRotation")) == 3
        time.sleep(1)
    finally:
        traffic.stop()
    _wait_quiet(rig)
    assert traffic.errors == []
    last = rig.stack_values()

    # THEN no delivery was refused anywhere, in either direction
    segment_state, userflow_state = rig.segment.state(), rig.userflow.state()
    segment_statuses = collections.Counter(d["status"] for d in segment_state["deliveries"])
    userflow_statuses = collections.Counter(d["status"] for d in userflow_state["deliveries"])
    assert _refused(segment_statuses) == {}, segment_statuses
    assert _refused(userflow_statuses) == {}, userflow_statuses

    # AND every app event arrived in Userflow exactly once (Segment -> bridge -> Userflow)
    arrived = collections.Counter(
        e["attributes"].get("ref") for e in userflow_state["events"]
        if e.get("attributes", {}).get("ref"))
    assert len(traffic.sent_refs) > refs_before_revocation > 0
    assert {ref: n for ref in traffic.sent_refs if (n := arrived[ref]) != 1} == {}
    assert set(arrived) == set(traffic.sent_refs)

    # AND every Userflow flow event arrived in Segment exactly once (Userflow -> bridge ->
    # Segment), each notification having gone to at least one live subscription
    flow_notifications = [n for n in userflow_state["notifications"]
                          if n["topic"].startswith("event.tracked.flow_")]
    assert len(flow_notifications) == 2 * traffic.simulated > 0
    assert [n["id"] for n in flow_notifications if not n["subscription_ids"]] == []
    userflow_source_events = segment_state["events"].get(last["userflow"]["source_id"], [])
    in_segment = collections.Counter(e["messageId"] for e in userflow_source_events)
    expected = {f"userflow-{n['id']}" for n in flow_notifications}
    assert {m: n for m in expected if (n := in_segment[m]) != 1} == {}
    assert set(in_segment) == expected

    # AND each old secret is refused now
    _assert_old_secrets_refused(rig, first, last)

    # AND the stack is settled: nothing left to do, with the new API key only
    assert rig.run("preview").summary.changes == 0
    assert rig.run("refresh").summary.changes == 0


def _assert_old_secrets_refused(rig: Rig, first: dict[str, Any], last: dict[str, Any]) -> None:
    assert rig.bridge is not None
    old_shared = first["destination"]["shared_secret"]
    old_webhook = first["webhook"]["secret"]
    assert old_shared not in last["destination"]["accepted_shared_secrets"].split(",")
    assert old_webhook not in last["webhook"]["accepted_secrets"].split(",")
    time.sleep(TTL_S + 0.5)  # the bridge's cache has seen the last secret strings

    segment_body = json.dumps({"type": "track", "userId": USERS[0], "event": PROBE_EVENT,
                               "messageId": "m-old-secret"}).encode()
    reply = requests.post(f"{rig.bridge.url}/segment", data=segment_body, timeout=HTTP_TIMEOUT_S,
                          headers={"Content-Type": "application/json",
                                   "X-Signature": sign_segment(segment_body, old_shared)})
    assert reply.status_code == 401, reply.text

    notification = json.dumps({"id": "n-old-secret", "object": "webhook_notification",
                               "topic": "event.tracked.flow_started", "data": {}}).encode()
    header = sign_userflow(notification, old_webhook, int(time.time()))
    reply = requests.post(f"{rig.bridge.url}/userflow", data=notification,
                          timeout=HTTP_TIMEOUT_S,
                          headers={"Content-Type": "application/json",
                                   "Userflow-Signature": header})
    assert reply.status_code == 401, reply.text

    old_key, new_key = first["userflow"]["write_key"], last["userflow"]["write_key"]
    source = next(s for s in rig.segment.state()["sources"] if s["slug"] == "userflow-local")
    assert old_key != new_key and source["writeKeys"] == [new_key]

    assert SANDBOX_API_KEY not in rig.userflow.api_keys
    reply = requests.get(f"{rig.userflow.url}/users", timeout=HTTP_TIMEOUT_S,
                         headers={"Authorization": f"Bearer {SANDBOX_API_KEY}",
                                  "Userflow-Version": "2020-01-03"})
    assert reply.status_code == 401
