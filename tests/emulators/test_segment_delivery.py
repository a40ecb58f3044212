"""Segment emulator, Webhooks (Actions) delivery: routing by trigger, the signature (checked
here with our own HMAC code), batching, retries on the compressed clock, never blocking."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from sandbox.segment import SegmentEmulator
from tests.emulators.helpers import (
    call,
    create_destination,
    create_source,
    create_subscription,
    track,
)
from tests.emulators.receiver import Receiver

SECRET = "delivery-secret"


def _sha1_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def _wired(
    segment: SegmentEmulator, url: str, secret: str | None = SECRET, **settings: Any
) -> tuple[str, str, str]:
    """A source with a destination and a Send subscription; returns (write key, dest, sub)."""
    source = create_source(segment.url, "app")
    destination = create_destination(segment.url, source["id"], secret=secret)
    trigger = settings.pop("trigger", 'type = "identify" or type = "track" or type = "group"')
    subscription = create_subscription(
        segment.url, destination["id"], url, trigger=trigger, **settings
    )
    return source["writeKeys"][0], destination["id"], subscription["id"]


def _settle(segment: SegmentEmulator) -> None:
    assert segment.deliveries.wait_idle(10.0), "deliveries did not finish"


def test_event_is_delivered_signed_with_the_shared_secret(
    segment: SegmentEmulator, receiver: Receiver
) -> None:
    key, destination_id, subscription_id = _wired(
        segment, receiver.url + "/segment", headers={"X-Env": "test"}
    )

    track(segment.url, key, "track", {"userId": "u1", "event": "Paid", "messageId": "m1"})
    [received] = receiver.wait_for(1)

    assert received.method == "POST" and received.path == "/segment"
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["User-Agent"] == "Segment (Actions)"
    assert received.headers["X-Env"] == "test"
    assert received.headers["X-Signature"] == _sha1_hex(SECRET, received.body)
    body = json.loads(received.body)
    assert body["event"] == "Paid" and body["messageId"] == "m1" and body["type"] == "track"
    assert body == segment.state()["events"][next(iter(segment.state()["events"]))][0]
    _settle(segment)
    [attempt] = segment.delivery_log()
    assert attempt["status"] == 200 and attempt["attempt"] == 1
    assert attempt["destination_id"] == destination_id
    assert attempt["subscription_id"] == subscription_id
    assert attempt["latency_ms"] >= 0


def test_method_setting_is_used(segment: SegmentEmulator, receiver: Receiver) -> None:
    key, _, _ = _wired(segment, receiver.url + "/put", method="PUT")

    track(segment.url, key, "identify", {"userId": "u1"})

    assert receiver.wait_for(1)[0].method == "PUT"


def test_without_a_shared_secret_there_is_no_signature(
    segment: SegmentEmulator, receiver: Receiver
) -> None:
    key, _, _ = _wired(segment, receiver.url, secret=None)

    track(segment.url, key, "identify", {"userId": "u1"})

    assert "X-Signature" not in receiver.wait_for(1)[0].headers


def test_only_events_matching_the_trigger_are_delivered(
    segment: SegmentEmulator, receiver: Receiver
) -> None:
    key, _, _ = _wired(segment, receiver.url, trigger='type = "track" and event != "Ignored"')

    track(segment.url, key, "identify", {"userId": "u1"})
    track(segment.url, key, "track", {"userId": "u1", "event": "Ignored"})
    track(segment.url, key, "track", {"userId": "u1", "event": "Kept"})
    _settle(segment)

    assert [json.loads(r.body)["event"] for r in receiver.requests] == ["Kept"]


@pytest.mark.parametrize("what", ["destination", "subscription"])
def test_disabled_destination_or_subscription_delivers_nothing(
    segment: SegmentEmulator, receiver: Receiver, what: str
) -> None:
    key, destination_id, subscription_id = _wired(segment, receiver.url)
    if what == "destination":
        call(segment.url, "PATCH", f"/destinations/{destination_id}", {"enabled": False})
    else:
        call(
            segment.url,
            "PATCH",
            f"/destinations/{destination_id}/subscriptions/{subscription_id}",
            {"input": {"enabled": False}},
            media="application/vnd.segment.v1alpha+json",
        )

    track(segment.url, key, "identify", {"userId": "u1"})
    _settle(segment)

    assert receiver.requests == []
    assert segment.state()["events"]  # stored all the same


def test_events_of_another_source_are_not_delivered(
    segment: SegmentEmulator, receiver: Receiver
) -> None:
    _wired(segment, receiver.url)
    other = create_source(segment.url, "other")

    track(segment.url, other["writeKeys"][0], "identify", {"userId": "u1"})
    _settle(segment)

    assert receiver.requests == []


def test_batching_sends_arrays_signed_over_the_first_event(receiver: Receiver) -> None:
    # A 1 s window: the first three events fill a batch long before it closes, even on a
    # loaded machine; the fourth then waits for the window alone.
    with SegmentEmulator(batch_window_s=1.0) as segment:
        key, _, _ = _wired(segment, receiver.url, enable_batching=True, batch_size=3)

        for index in range(4):
            track(segment.url, key, "track", {"userId": "u1", "event": f"E{index}", "name": "é"})
        received = receiver.wait_for(2)
        _settle(segment)
        log = segment.delivery_log()

    full, rest = received[0], received[1]
    full_batch = json.loads(full.body)
    assert [e["event"] for e in full_batch] == ["E0", "E1", "E2"]
    first_alone = json.dumps(full_batch[0], separators=(",", ":"), ensure_ascii=False).encode()
    assert full.headers["X-Signature"] == _sha1_hex(SECRET, first_alone)
    assert full.headers["X-Signature"] != _sha1_hex(SECRET, full.body)
    assert [e["event"] for e in json.loads(rest.body)] == ["E3"]
    assert [len(d["message_ids"]) for d in log] == [3, 1]
    assert all(d["batched"] for d in log)


def test_retried_on_500_then_delivered(segment: SegmentEmulator) -> None:
    with Receiver(statuses=[500, 503, 200]) as flaky:
        key, _, _ = _wired(segment, flaky.url)

        track(segment.url, key, "identify", {"userId": "u1", "messageId": "m-retry"})
        received = flaky.wait_for(3)
        _settle(segment)

    assert [r.status for r in received] == [500, 503, 200]
    assert received[0].body == received[2].body
    log = segment.delivery_log()
    assert [(d["attempt"], d["status"]) for d in log] == [(1, 500), (2, 503), (3, 200)]
    assert len({d["delivery_id"] for d in log}) == 1


@pytest.mark.parametrize(
    ("status", "retried"),
    [(400, False), (404, False), (501, False), (408, True), (423, True), (429, True)],
)
def test_final_4xx_and_501_are_not_retried_but_408_423_429_are(
    segment: SegmentEmulator, status: int, retried: bool
) -> None:
    attempts = [status, 200] if retried else [status]
    with Receiver(statuses=[status, 200]) as receiver:
        key, _, _ = _wired(segment, receiver.url)

        track(segment.url, key, "identify", {"userId": "u1"})
        _settle(segment)

        assert [r.status for r in receiver.requests] == attempts
    assert [d["status"] for d in segment.delivery_log()] == attempts


def test_attempts_are_bounded(receiver: Receiver) -> None:
    with (
        SegmentEmulator(delivery_attempts=3, delivery_backoff_s=0.01) as segment,
        Receiver(statuses=[500] * 10) as down,
    ):
        key, _, _ = _wired(segment, down.url)
        track(segment.url, key, "identify", {"userId": "u1"})
        _settle(segment)

        assert len(down.requests) == 3
        assert [d["attempt"] for d in segment.delivery_log()] == [1, 2, 3]


def test_timeouts_are_retried() -> None:
    with (
        SegmentEmulator(delivery_timeout_s=0.3, delivery_backoff_s=0.01) as segment,
        Receiver(delays_s=[1.0]) as slow,
    ):
        key, _, _ = _wired(segment, slow.url)
        track(segment.url, key, "identify", {"userId": "u1"})
        _settle(segment)
        log = segment.delivery_log()

    assert log[0]["status"] is None and "timed out" in log[0]["error"]
    assert log[1]["status"] == 200


def test_delivery_never_blocks_the_tracking_api() -> None:
    with (
        SegmentEmulator(delivery_backoff_s=0.01) as segment,
        Receiver(delays_s=[1.0]) as slow,
    ):
        key, _, _ = _wired(segment, slow.url)

        started = time.monotonic()
        response = track(segment.url, key, "identify", {"userId": "u1"})
        elapsed = time.monotonic() - started

        assert response.status_code == 200
        assert elapsed < 0.8  # the receiver holds each delivery for 1 s
        assert len(slow.wait_for(1, timeout_s=5)) == 1
