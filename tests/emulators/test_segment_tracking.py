"""Segment emulator, Tracking API: auth, limits, what is stored, what is dropped, and the
official `segment-analytics-python` library sending through it unmodified."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import requests
from segment.analytics import Client

from sandbox.segment import SegmentEmulator
from tests.emulators.helpers import call, create_source, track


def _events(segment: SegmentEmulator, source_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = segment.state()["events"].get(source_id, [])
    return events


def test_identify_with_basic_auth_is_stored_per_source(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    other = create_source(segment.url, "other")

    response = track(
        segment.url, source["writeKeys"][0], "identify", {"userId": "u1", "traits": {"a": 1}}
    )

    assert response.status_code == 200
    assert response.json() == {"success": True}
    [event] = _events(segment, source["id"])
    assert event["type"] == "identify"
    assert event["userId"] == "u1" and event["traits"] == {"a": 1}
    assert event["messageId"].startswith("api-")
    assert event["receivedAt"].endswith("Z") and event["timestamp"]
    assert _events(segment, other["id"]) == []


def test_write_key_in_the_body_works_and_is_not_stored(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")

    response = requests.post(
        f"{segment.url}/v1/track",
        json={"writeKey": source["writeKeys"][0], "userId": "u1", "event": "Signed Up"},
        timeout=5,
    )

    assert response.status_code == 200
    [event] = _events(segment, source["id"])
    assert event["event"] == "Signed Up" and "writeKey" not in event


def test_basic_auth_encodes_the_write_key_with_a_colon(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    token = base64.b64encode(f"{source['writeKeys'][0]}:".encode()).decode()

    requests.post(
        f"{segment.url}/v1/page",
        data=json.dumps({"anonymousId": "a1", "name": "Home"}),
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        timeout=5,
    )

    assert [e["type"] for e in _events(segment, source["id"])] == ["page"]


def test_batch_inherits_context_and_keeps_each_type(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    batch = {
        "batch": [
            {"type": "identify", "userId": "u1", "context": {"ip": "1.2.3.4"}},
            {"type": "track", "userId": "u1", "event": "Clicked"},
            {"type": "group", "userId": "u1", "groupId": "g1"},
            {"type": "alias", "userId": "u2", "previousId": "u1"},
            {"type": "screen", "anonymousId": "a1", "name": "Main"},
        ],
        "context": {"library": {"name": "test"}},
    }

    response = track(segment.url, source["writeKeys"][0], "batch", batch)

    assert response.status_code == 200
    events = _events(segment, source["id"])
    assert [e["type"] for e in events] == ["identify", "track", "group", "alias", "screen"]
    assert events[0]["context"] == {"library": {"name": "test"}, "ip": "1.2.3.4"}
    assert events[1]["context"] == {"library": {"name": "test"}}


def test_invalid_json_and_oversize_payloads_are_400(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    key = source["writeKeys"][0]
    big = "x" * (33 * 1024)

    invalid = requests.post(f"{segment.url}/v1/track", data=b"{nope", auth=(key, ""), timeout=5)
    oversize = track(segment.url, key, "track", {"userId": "u", "event": "e", "p": big})
    oversize_in_batch = track(
        segment.url, key, "batch", {"batch": [{"type": "track", "userId": "u", "event": big}]}
    )
    batch_events = [{"type": "track", "userId": "u", "event": "e", "p": "y" * 20_000}] * 26
    oversize_batch = track(segment.url, key, "batch", {"batch": batch_events})
    just_under = track(segment.url, key, "track", {"userId": "u", "event": "e", "p": "x" * 30_000})

    assert [r.status_code for r in (invalid, oversize, oversize_in_batch, oversize_batch)] == [
        400
    ] * 4
    assert invalid.json()["success"] is False
    assert just_under.status_code == 200
    assert len(_events(segment, source["id"])) == 1


def test_unacceptable_events_answer_200_and_are_dropped_with_a_reason(
    segment: SegmentEmulator,
) -> None:
    source = create_source(segment.url, "app")
    key = source["writeKeys"][0]

    responses = [
        track(segment.url, key, "identify", {"traits": {"a": 1}}),
        track(segment.url, key, "track", {"userId": "u1"}),
        track(segment.url, "not-a-key", "track", {"userId": "u1", "event": "e"}),
        requests.post(f"{segment.url}/v1/track", json={"userId": "u", "event": "e"}, timeout=5),
    ]

    assert [r.status_code for r in responses] == [200] * 4
    assert _events(segment, source["id"]) == []
    reasons = [d["reason"] for d in segment.state()["dropped"]]
    assert reasons == [
        "missing userId and anonymousId",
        "track without event",
        "unknown write key",
        "no write key",
    ]


def test_events_of_a_disabled_source_are_dropped(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app", enabled=False)

    track(segment.url, source["writeKeys"][0], "track", {"userId": "u", "event": "e"})

    assert _events(segment, source["id"]) == []
    assert segment.state()["dropped"][0]["reason"] == "source disabled"


def test_message_id_dedupes_within_a_source(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    key = source["writeKeys"][0]
    event = {"userId": "u1", "event": "Paid", "messageId": "m-1"}

    for _ in range(3):
        assert track(segment.url, key, "track", event).status_code == 200
    track(segment.url, key, "track", {**event, "messageId": "m-2"})

    assert [e["messageId"] for e in _events(segment, source["id"])] == ["m-1", "m-2"]
    assert segment.state()["deduplicated"] == 2


def test_gzip_bodies_are_read(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    body = gzip.compress(
        json.dumps({"batch": [{"type": "track", "userId": "u", "event": "z"}]}).encode()
    )

    response = requests.post(
        f"{segment.url}/v1/batch",
        data=body,
        auth=(source["writeKeys"][0], ""),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        timeout=5,
    )

    assert response.status_code == 200
    assert [e["event"] for e in _events(segment, source["id"])] == ["z"]


def test_write_key_added_later_works_and_a_removed_one_stops(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    old = source["writeKeys"][0]
    new = call(segment.url, "POST", f"/sources/{source['id']}/writekey").json()["data"]["writeKey"]
    call(segment.url, "DELETE", f"/sources/{source['id']}/writekey/{old}")

    track(segment.url, new, "track", {"userId": "u", "event": "new-key"})
    track(segment.url, old, "track", {"userId": "u", "event": "old-key"})

    assert [e["event"] for e in _events(segment, source["id"])] == ["new-key"]


def test_official_segment_library_sends_identify_track_group(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    errors: list[Exception] = []
    client = Client(
        write_key=source["writeKeys"][0],
        host=segment.url,
        on_error=lambda error, _batch: errors.append(error),
        max_retries=1,
    )

    client.identify("user-1", {"email": "u1@example.com"})
    client.track("user-1", "Project Created", {"plan": "pro"})
    client.group("user-1", "acme", {"name": "Acme"})
    client.flush()
    client.shutdown()

    assert errors == []
    events = _events(segment, source["id"])
    assert [e["type"] for e in events] == ["identify", "track", "group"]
    assert events[0]["traits"] == {"email": "u1@example.com"}
    assert events[1]["event"] == "Project Created"
    assert events[1]["properties"] == {"plan": "pro"}
    assert events[2]["groupId"] == "acme"
    assert events[0]["context"]["library"]["name"] == "analytics-python"
    tracking_calls = [r["path"] for r in segment.request_log() if r["kind"] == "tracking"]
    assert tracking_calls and set(tracking_calls) == {"/v1/batch"}
