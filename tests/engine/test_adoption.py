"""Moving off a hand-made setup, under the real Pulumi engine and under traffic.

GIVEN the integration clicked together by hand (made here through the emulators' own APIs):
the app's source, an HTTP API source for Userflow, a Webhooks (Actions) destination and a
Userflow webhook subscription, both delivering to a hand-made receiver (a second local
bridge, "the relay"), with events flowing both ways; WHEN `pulumi up` runs with the adoption
keys pointing at those objects while traffic keeps flowing, and the relay is then retired;
THEN the stack owns the same objects (nothing new beside them), every event arrived exactly
once across the switch (counted by messageId / reference at the emulators), and at no moment
was there more, or less, than one delivery path per direction. `destroy` then releases the
adopted objects (kept, the delivering ones disabled)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from components.segment_api import (
    HTTP_API_SOURCE_METADATA_ID,
    WEBHOOKS_ACTIONS_METADATA_ID,
    WEBHOOKS_SEND_ACTION_ID,
)
from components.userflow_webhook import DEFAULT_TOPICS
from ops.engine import Engine
from sandbox.local_bridge import LocalBridge
from sandbox.segment import SegmentEmulator
from sandbox.services import free_port
from sandbox.userflow import UserflowEmulator

pytestmark = pytest.mark.engine

STACK = "local"
SEGMENT_TOKEN = "sandbox-segment-token"
USERFLOW_KEY = "ak_sandbox_local"
HAND_SECRET = "shared-secret-typed-by-hand"
HAND_DESTINATION = "Userflow (by hand)"
HAND_SOURCE_SLUG = "userflow-events"
TRIGGER = 'type = "identify" or type = "track" or type = "group"'
USERS = [f"adopt-user-{i}" for i in range(4)]
# Stack, integration, the Userflow source, the destination, the Userflow webhook (the app's
# source is given by id: nothing to look up or create).
RESOURCES = 5
SETTLE_S = 60.0


def segment_api(url: str, method: str, path: str, body: Any = None) -> Any:
    media = ("application/vnd.segment.v1alpha+json" if "/subscriptions" in path
             else "application/vnd.segment.v1+json")
    headers = {"Authorization": f"Bearer {SEGMENT_TOKEN}", "Accept": media,
               "Content-Type": media}
    reply = requests.request(method, url + path, json=body, headers=headers, timeout=10)
    assert reply.status_code < 300, reply.text
    return reply.json()["data"]


def userflow_api(url: str, method: str, path: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {USERFLOW_KEY}", "Userflow-Version": "2020-01-03"}
    reply = requests.request(method, url + path, json=body, headers=headers, timeout=10)
    assert reply.status_code < 300, reply.text
    return reply.json()


@dataclass
class HandMade:
    """The setup a person clicked together, and its receiver."""

    app_source_id: str
    app_write_key: str
    userflow_source: dict[str, Any]
    destination_id: str
    webhook: dict[str, Any]

    def relay_env(self, segment_url: str, userflow_url: str) -> dict[str, str]:
        """What a receiver of these objects needs: their secrets and the two APIs."""
        return {"USERFLOW_API_URL": userflow_url, "USERFLOW_API_KEY": USERFLOW_KEY,
                "SEGMENT_TRACKING_URL": segment_url,
                "SEGMENT_WRITE_KEY": self.userflow_source["writeKeys"][0],
                "SEGMENT_SHARED_SECRET": HAND_SECRET,
                "USERFLOW_WEBHOOK_SECRET": self.webhook["secret"]}


def click_together(segment_url: str, userflow_url: str, relay_url: str) -> HandMade:
    def source(slug: str) -> dict[str, Any]:
        body = {"slug": slug, "enabled": True, "metadataId": HTTP_API_SOURCE_METADATA_ID}
        created: dict[str, Any] = segment_api(segment_url, "POST", "/sources", body)["source"]
        return created

    app = source("my-app")
    userflow_source = source(HAND_SOURCE_SLUG)
    destination_id = segment_api(segment_url, "POST", "/destinations", {
        "sourceId": app["id"], "metadataId": WEBHOOKS_ACTIONS_METADATA_ID,
        "name": HAND_DESTINATION, "enabled": True, "settings": {"sharedSecret": HAND_SECRET},
    })["destination"]["id"]
    segment_api(segment_url, "POST", f"/destinations/{destination_id}/subscriptions", {
        "name": "Send to Userflow", "actionId": WEBHOOKS_SEND_ACTION_ID, "trigger": TRIGGER,
        "enabled": True, "settings": {"url": f"{relay_url}/segment", "method": "POST"}})
    webhook = userflow_api(userflow_url, "POST", "/webhook_subscriptions", {
        "api_version": "2020-01-03", "url": f"{relay_url}/userflow",
        "topics": list(DEFAULT_TOPICS)})
    for user in USERS:  # in-app activity needs known users
        userflow_api(userflow_url, "POST", "/users", {"id": user, "attributes": {}})
    return HandMade(app["id"], app["writeKeys"][0], userflow_source, destination_id, webhook)


def delivery_paths(segment: Mapping[str, Any], userflow: Mapping[str, Any],
                   app_source_id: str) -> tuple[int, int]:
    """(Segment paths for the app's events, Userflow paths for its events): enabled Send
    subscriptions of enabled Webhooks destinations on the app's source, and enabled Userflow
    subscriptions on any of the integration's topics (what the emulators deliver to)."""
    live = {d["id"] for d in segment["destinations"]
            if d["sourceId"] == app_source_id and d["enabled"]}
    segment_paths = sum(1 for s in segment["subscriptions"]
                        if s["destinationId"] in live and s["enabled"]
                        and s["actionId"] == WEBHOOKS_SEND_ACTION_ID)
    userflow_paths = sum(1 for s in userflow["webhook_subscriptions"]
                         if not s["disabled"] and set(s["topics"]) & set(DEFAULT_TOPICS))
    return segment_paths, userflow_paths


class Repeating(threading.Thread):
    """Calls `step(i)` every `interval_s` until stopped; remembers the first error."""

    def __init__(self, step: Callable[[int], None], interval_s: float) -> None:
        super().__init__(daemon=True)
        self.step, self.interval_s = step, interval_s
        self.halt = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        i = 0
        while not self.halt.is_set():
            try:
                self.step(i)
            except Exception as error:  # reported by the test, not swallowed
                self.errors.append(f"{type(error).__name__}: {error}")
                return
            i += 1
            self.halt.wait(self.interval_s)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


@dataclass
class Traffic:
    """Tracks through the app's source and flows in Userflow, both ways, all the time."""

    segment_url: str
    userflow_url: str
    write_key: str
    refs: list[str] = field(default_factory=list)

    def step(self, i: int) -> None:
        ref = f"adopt-track-{i}"
        user = USERS[i % len(USERS)]
        reply = requests.post(f"{self.segment_url}/v1/track", auth=(self.write_key, ""),
                              json={"userId": user, "event": "Report Created",
                                    "messageId": ref, "properties": {"ref": ref}}, timeout=10)
        reply.raise_for_status()
        self.refs.append(ref)
        if i % 3 == 0:
            requests.post(f"{self.userflow_url}/__sandbox__/simulate",
                          json={"user_id": user, "activity": "flow"},
                          timeout=10).raise_for_status()


@dataclass
class PathWatch:
    """Samples both emulators' delivery paths all along (the engine's whole run included)."""

    segment: SegmentEmulator
    userflow: UserflowEmulator
    app_source_id: str
    seen: Counter[tuple[int, int]] = field(default_factory=Counter)

    def step(self, _i: int) -> None:
        self.seen[delivery_paths(self.segment.state(), self.userflow.state(),
                                 self.app_source_id)] += 1


def wait_until(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def drained(bridge: LocalBridge) -> bool:
    return bool(bridge.stats()["queues"]["queue"] == 0)


def accepted(bridge: LocalBridge) -> tuple[int, int]:
    stats = bridge.stats()
    return (int(stats["segment_to_userflow"]["accepted"]),
            int(stats["userflow_to_segment"]["accepted"]))


@pytest.fixture
def emulators() -> Iterator[tuple[SegmentEmulator, UserflowEmulator]]:
    with SegmentEmulator() as segment, UserflowEmulator() as userflow:
        yield segment, userflow


def test_a_hand_made_setup_is_adopted_under_traffic_exactly_once(
    engine_binary: Path, tmp_path: Path, emulators: tuple[SegmentEmulator, UserflowEmulator]
) -> None:
    segment, userflow = emulators
    relay_port, bridge_port = free_port(), free_port()
    hand = click_together(segment.url, userflow.url, f"http://127.0.0.1:{relay_port}")
    env = hand.relay_env(segment.url, userflow.url)
    # The bridge is up before the switch with the secrets the adopted objects sign with (on
    # AWS: docs/operations.md, "Move off a hand-made setup" says how they get there first).
    with LocalBridge(port=relay_port, env=env) as relay, \
            LocalBridge(port=bridge_port, env=env) as bridge:
        engine = Engine(state_dir=tmp_path / "state")
        engine.ensure_stack(STACK)
        overrides = {
            "bridgeUrl": bridge.url, "segmentApiUrl": segment.url,
            "segmentTrackingUrl": segment.url, "userflowApiUrl": userflow.url,
            "createAppSource": "false", "segmentAppSourceId": hand.app_source_id,
            "adoptUserflowSourceSlug": HAND_SOURCE_SLUG,
            "adoptDestinationName": HAND_DESTINATION,
            "adoptUserflowWebhookId": hand.webhook["id"],
        }
        with engine.config_copy(STACK, overrides) as config_file:
            engine.command(["config", "set", "--secret", "--stack", STACK, "--config-file",
                            str(config_file), "userflow-segment:adoptDestinationSharedSecret",
                            HAND_SECRET])
            traffic = Traffic(segment.url, userflow.url, hand.app_write_key)
            watch = PathWatch(segment, userflow, hand.app_source_id)
            sender, watcher = Repeating(traffic.step, 0.05), Repeating(watch.step, 0.01)
            watcher.start()
            sender.start()
            try:
                # GIVEN the hand-made setup delivering through the relay
                assert wait_until(lambda: min(accepted(relay)) >= 3, 30), relay.stats()

                # WHEN previewed THEN the stack's resources would be created, and neither
                # Segment's Public API nor Userflow's subscriptions were called
                calls_before = _management_calls(segment, userflow)
                preview = engine.preview(STACK, config_file)
                assert preview.summary.count("create") == RESOURCES, preview.summary
                assert _management_calls(segment, userflow) == calls_before

                # WHEN up adopts it, traffic flowing
                up = engine.up(STACK, config_file)
                assert up.summary.count("create") == RESOURCES, up.summary
                assert wait_until(lambda: min(accepted(bridge)) >= 3, 30), bridge.stats()
            finally:
                sender.stop()
            # AND the relay, the hand-made leftover, is retired once it has handed on all it got
            assert wait_until(lambda: drained(relay) and drained(bridge), SETTLE_S)
            relay_took = accepted(relay)
            relay.stop()
            watcher.stop()
            assert sender.errors == [] and watcher.errors == []

            # THEN the stack owns the hand-made objects themselves, and nothing beside them
            outputs = engine.outputs(STACK)
            assert outputs["destinationId"] == hand.destination_id
            assert outputs["userflowSubscriptionId"] == hand.webhook["id"]
            assert outputs["userflowSourceId"] == hand.userflow_source["id"]
            assert outputs["userflowSourceSlug"] == "userflow-local"
            seg, uf = segment.state(), userflow.state()
            assert (len(seg["sources"]), len(seg["destinations"]), len(seg["subscriptions"]),
                    len(uf["webhook_subscriptions"])) == (2, 1, 1, 1)
            assert seg["subscriptions"][0]["settings"]["url"] == f"{bridge.url}/segment"
            assert uf["webhook_subscriptions"][0]["url"] == f"{bridge.url}/userflow"

            # AND one delivery path per direction at every moment, never two, never none
            assert set(watch.seen) == {(1, 1)}, watch.seen
            assert sum(watch.seen.values()) > 100  # it really watched, all along

            # AND both receivers carried traffic: the switch happened under load
            assert min(relay_took) > 0 and min(accepted(bridge)) > 0

            # AND every app event reached Userflow exactly once, through one path or the other
            assert len(traffic.refs) > 20
            arrived = Counter(
                str((e.get("attributes") or {}).get("ref")) for e in _events(uf)
                if (e.get("attributes") or {}).get("ref"))
            assert arrived == Counter(traffic.refs)
            # AND every Userflow event reached Segment exactly once (the notification ids
            # are the messageIds the bridge gives them; Segment deduplicated none)
            ours = [n for n in uf["notifications"] if n["topic"] in DEFAULT_TOPICS]
            assert len(ours) > 5 and all(len(n["subscription_ids"]) == 1 for n in ours)
            notified = {n["id"] for n in ours}
            landed = Counter(str(e.get("messageId"))
                             for e in seg["events"].get(hand.userflow_source["id"], []))
            assert landed == Counter(f"userflow-{n}" for n in notified)
            assert seg["deduplicated"] == 0

            # AND a second preview changes nothing (the adoption keys matter at create only)
            again = engine.preview(STACK, config_file)
            assert again.summary.changes == 0, again.summary

            # WHEN destroyed THEN the adopted objects are released: kept, the delivering ones
            # disabled; the app's own source untouched
            destroyed = engine.destroy(STACK, config_file)
            assert destroyed.summary.count("delete") == RESOURCES, destroyed.summary
            seg, uf = segment.state(), userflow.state()
            assert {s["id"] for s in seg["sources"]} == {hand.app_source_id,
                                                         hand.userflow_source["id"]}
            [destination] = seg["destinations"]
            assert destination["id"] == hand.destination_id and destination["enabled"] is False
            [webhook] = uf["webhook_subscriptions"]
            assert webhook["id"] == hand.webhook["id"] and webhook["disabled"] is True

            # AND no adopted secret is in plaintext in the state or in what the engine printed
            secrets = {"shared secret": HAND_SECRET, "webhook secret": hand.webhook["secret"],
                       "write key": hand.userflow_source["writeKeys"][0]}
            written = "\n".join(p.read_text(encoding="utf-8", errors="replace")
                                for p in sorted((tmp_path / "state").rglob("*")) if p.is_file())
            printed = "\n".join(r.stdout + r.stderr for r in (preview, up, again, destroyed))
            assert "ciphertext" in written
            assert [name for name, value in secrets.items()
                    if value in written or value in printed] == []


def _events(userflow_state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    events = userflow_state.get("events") or []
    if isinstance(events, Mapping):
        events = list(events.values())
    return [e for e in events if isinstance(e, Mapping)]


def _management_calls(segment: SegmentEmulator, userflow: UserflowEmulator) -> int:
    """Calls to what the stack manages (not the traffic: tracking, Userflow's users/events)."""
    hooks = [r for r in userflow.request_log() if "/webhook_subscriptions" in r["path"]]
    return len(segment.request_log(kind="public")) + len(hooks)
