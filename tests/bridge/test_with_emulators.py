"""The local bridge between the project's Segment and Userflow emulators, no fakes in between.

One Segment source plays both the app's source and the bridge's HTTP API source, so every
event the bridge writes to Segment is delivered straight back to it: the loop markers are
all that stops the two systems from echoing events forever.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from segment.analytics import Client

from sandbox.local_bridge import LocalBridge
from sandbox.segment import ADMIN_TOKEN, SegmentEmulator
from sandbox.userflow import API_VERSION, SANDBOX_API_KEY, UserflowEmulator
from tests.bridge.helpers import free_port, wait_for

V1 = "application/vnd.segment.v1+json"
V1ALPHA = "application/vnd.segment.v1alpha+json"
SHARED = "bridge-shared-secret"


def segment_api(base: str, path: str, body: dict[str, Any], media: str = V1) -> Any:
    reply = requests.post(base + path, data=json.dumps(body), timeout=10, headers={
        "Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": media, "Accept": media})
    assert reply.status_code == 200, reply.text
    return reply.json()["data"]


@pytest.fixture
def world() -> Iterator[tuple[SegmentEmulator, UserflowEmulator, LocalBridge]]:
    with SegmentEmulator(batch_window_s=0.2, delivery_backoff_s=0.05) as segment, \
            UserflowEmulator(delivery_backoff_s=0.05) as userflow:
        bridge_url = f"http://127.0.0.1:{free_port()}"
        source = segment_api(segment.url, "/sources", {
            "slug": "app-local", "enabled": True, "metadataId": "iUM16Md8P2"})["source"]
        destination = segment_api(segment.url, "/destinations", {
            "sourceId": source["id"], "metadataId": "614a3c7d791c91c41bae7599", "enabled": True,
            "name": "Userflow bridge", "settings": {"sharedSecret": SHARED}})["destination"]
        segment_api(segment.url, f"/destinations/{destination['id']}/subscriptions", {
            "name": "Send to bridge", "actionId": "nFPnRozhz1mh4Gbx4MLvT5",
            "trigger": 'type = "identify" or type = "track" or type = "group"', "enabled": True,
            "settings": {"url": bridge_url + "/segment", "method": "POST",
                         "enable_batching": True, "batch_size": 10}}, media=V1ALPHA)
        reply = requests.post(userflow.url + "/webhook_subscriptions", timeout=10, headers={
            "Authorization": f"Bearer {SANDBOX_API_KEY}", "Userflow-Version": API_VERSION},
            json={"api_version": API_VERSION, "url": bridge_url + "/userflow",
                  "topics": ["event.tracked"]})
        assert reply.status_code in {200, 201}, reply.text
        env = {"USERFLOW_API_URL": userflow.url, "USERFLOW_API_KEY": SANDBOX_API_KEY,
               "SEGMENT_TRACKING_URL": segment.url, "SEGMENT_WRITE_KEY": source["writeKeys"][0],
               "SEGMENT_SHARED_SECRET": SHARED, "USERFLOW_WEBHOOK_SECRET": reply.json()["secret"],
               # the subscription above batches
               "BRIDGE_SEGMENT_BATCHING": "true"}
        with LocalBridge(port=int(bridge_url.rsplit(":", 1)[1]), env=env) as bridge:
            yield segment, userflow, bridge


def test_round_trip_through_both_emulators_without_echo(
        world: tuple[SegmentEmulator, UserflowEmulator, LocalBridge]) -> None:
    segment, userflow, bridge = world
    source_id = segment.state()["sources"][0]["id"]
    write_key = segment.state()["sources"][0]["writeKeys"][0]
    # GIVEN the app identifies a user and tracks an event with the official Segment library
    app = Client(write_key=write_key, host=segment.url, sync_mode=True)
    app.identify("u1", {"email": "u1@example.com", "firstName": "Ada",
                        "createdAt": "2024-01-01T00:00:00Z"})
    app.track("u1", "Order Completed", {"revenue": 12})
    # THEN Userflow gets the user and the event. One batch carries both, and delivery makes
    # its calls in parallel: the event may land first (Userflow then creates the user) and the
    # identify's attributes a moment later, so wait for both.
    def identified() -> bool:
        return any(u["id"] == "u1" and "email" in u["attributes"]
                   for u in userflow.state()["users"])

    assert wait_for(lambda: identified() and any(
        e["name"] == "order_completed" for e in userflow.state()["events"]), timeout=15)
    [user] = [u for u in userflow.state()["users"] if u["id"] == "u1"]
    assert user["attributes"]["email"] == "u1@example.com"
    assert user["attributes"]["first_name"] == "Ada"
    # WHEN the user goes through a flow in Userflow
    reply = requests.post(userflow.url + "/__sandbox__/simulate", timeout=10,
                          json={"user_id": "u1", "activity": "flow"})
    assert reply.status_code == 200, reply.text
    # THEN Segment receives Flow Started / Flow Completed, marked, once each
    def segment_events() -> list[dict[str, Any]]:
        return list(segment.state()["events"].get(source_id, []))

    assert wait_for(lambda: {"Flow Started", "Flow Completed"} <= {
        e.get("event") for e in segment_events()}, timeout=15)
    bridged = [e for e in segment_events() if e.get("event", "").startswith("Flow ")]
    assert sorted(e["event"] for e in bridged) == ["Flow Completed", "Flow Started"]
    assert all(e["context"]["userflowBridge"] == {"direction": "userflow-to-segment"}
               and e["messageId"].startswith("userflow-") for e in bridged)
    # AND the echoes came back to the bridge and were dropped on both sides
    def stats() -> dict[str, Any]:
        return bridge.stats()

    assert wait_for(lambda: stats()["segment_to_userflow"]["skipped"].get("echo", 0) == 2
                    and stats()["userflow_to_segment"]["skipped"].get("echo", 0) == 1,
                    timeout=15), stats()
    assert wait_for(lambda: stats()["queues"] == {"queue": 0, "dead_letter_queue": 0})
    userflow_events = sorted(e["name"] for e in userflow.state()["events"])
    assert userflow_events == ["flow_completed", "flow_started", "order_completed"]
    assert len(segment_events()) == 4  # identify, Order Completed, Flow Started, Flow Completed
    final = stats()
    for direction in ("segment_to_userflow", "userflow_to_segment"):
        assert final[direction]["accepted"] == final[direction]["delivered"]
        assert final[direction]["dead_lettered"] == 0
