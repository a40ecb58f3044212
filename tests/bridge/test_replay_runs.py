"""Dead-letter replay runs: each letter moved at most once per run, whatever its size.

A run that moves a letter whose delivery fails again must not pick the returning letter up
a second time; letters too large to share one SendMessageBatch call (256 KiB for all its
entries together) are still moved.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from bridge_code.envelope import encode_envelope
from bridge_code.replay import (
    SEND_BATCH_BYTES,
    ReplayCounts,
    entry_bytes,
    redrive,
    replay_markers,
    send_batches,
)
from tests.bridge.helpers import (
    Bridge,
    FakeUpstream,
    Fault,
    answer,
    load_event,
    make_bridge,
    segment_request,
)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with mock_aws(), FakeUpstream() as fake:
        yield fake


def track(i: int) -> dict[str, Any]:
    event: dict[str, Any] = load_event("segment_track.json")
    event.update(messageId=f"m-{i}", userId=f"user-{i}")
    return event


def attribute(message: dict[str, Any], name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name)
    return None if value is None else str(value["StringValue"])


def all_dead_letters(bridge: Bridge) -> list[dict[str, Any]]:
    """Every letter in the DLQ (visibility 0: a look that leaves them in place)."""
    letters: dict[str, dict[str, Any]] = {}
    for _ in range(5):
        reply = bridge.sqs.receive_message(
            QueueUrl=bridge.runtime.settings.dead_letter_queue_url, MaxNumberOfMessages=10,
            MessageAttributeNames=["All"], VisibilityTimeout=0)
        letters.update({m["MessageId"]: m for m in reply.get("Messages", [])})
    return list(letters.values())


def run_replay(bridge: Bridge, deliver_meanwhile: bool, limit: int = 40) -> ReplayCounts:
    """One replay run; with `deliver_meanwhile`, the delivery handler drains the work queue
    after every moved batch, as the deployed bridge's event source does while a run goes on."""
    s = bridge.runtime.settings
    assert s.dead_letter_queue_url and s.queue_url

    def progress(counts: ReplayCounts) -> None:
        if deliver_meanwhile:
            bridge.pump()

    return redrive(bridge.sqs, s.dead_letter_queue_url, s.queue_url, max_messages=limit,
                   progress=progress, wait_seconds=0, stats=bridge.runtime.stats)


def test_a_run_moves_each_permanently_rejected_letter_once(upstream: FakeUpstream) -> None:
    # GIVEN three events Userflow refuses for good (400), parked in the dead-letter queue
    bridge = make_bridge(upstream.url)
    upstream.fault(Fault("/events", count=1000, status=400))
    for i in range(3):
        status, reply = answer(bridge.ingest.handle(segment_request(track(i))))
        assert (status, reply["accepted"]) == (200, 1)
    bridge.pump()
    assert len(all_dead_letters(bridge)) == 3
    calls_before = len(upstream.received)
    # WHEN one replay run goes on while delivery keeps failing them
    counts = run_replay(bridge, deliver_meanwhile=True)
    # THEN each letter was moved exactly once, and Userflow was called once per letter
    assert (counts.moved, counts.failed) == (3, 0)
    assert len(upstream.received) - calls_before == 3
    # AND each is back in the dead-letter queue with its new reason and its replay count
    letters = all_dead_letters(bridge)
    assert len(letters) == 3
    assert {attribute(m, "dead_letter_reason") for m in letters} == {"rejected"}
    assert {attribute(m, "replay_count") for m in letters} == {"1"}
    assert all("HTTP 400" in (attribute(m, "dead_letter_detail") or "") for m in letters)
    # AND a later run moves them again, once each, counting on
    counts = run_replay(bridge, deliver_meanwhile=True)
    assert counts.moved == 3
    assert {attribute(m, "replay_count") for m in all_dead_letters(bridge)} == {"2"}
    assert len(upstream.received) - calls_before == 6


def test_letters_a_run_moved_are_delivered_once_when_the_cause_is_fixed(
        upstream: FakeUpstream) -> None:
    # GIVEN two letters parked while Userflow refused them
    bridge = make_bridge(upstream.url)
    upstream.fault(Fault("/events", count=2, status=400))
    for i in range(2):
        answer(bridge.ingest.handle(segment_request(track(i))))
    bridge.pump()
    assert len(all_dead_letters(bridge)) == 2
    # WHEN replayed after the fix
    counts = run_replay(bridge, deliver_meanwhile=True)
    # THEN both are delivered, none is left
    assert counts.moved == 2
    assert sorted(r.body["user_id"] for r in upstream.delivered("/events")) == [
        "user-0", "user-1"]
    assert all_dead_letters(bridge) == []


def big_letter(i: int, size: int) -> str:
    event = track(i)
    event["properties"] = {"notes": "x" * size}
    return encode_envelope("segment_to_userflow", event, "2026-01-01T00:00:00Z", f"req-{i}")


def test_six_letters_of_240_kb_are_all_moved(upstream: FakeUpstream) -> None:
    # GIVEN six dead letters of about 240 KB each (together six times SendMessageBatch's cap)
    bridge = make_bridge(upstream.url)
    s = bridge.runtime.settings
    bodies = {big_letter(i, 240 * 1000) for i in range(6)}
    for body in bodies:
        assert 240_000 < len(body) < 250 * 1024
        bridge.sqs.send_message(QueueUrl=s.dead_letter_queue_url, MessageBody=body,
                                MessageAttributes={
                                    "direction": {"DataType": "String",
                                                  "StringValue": "segment_to_userflow"},
                                    "dead_letter_reason": {"DataType": "String",
                                                           "StringValue": "retries_exhausted"}})
    # WHEN replayed
    counts = run_replay(bridge, deliver_meanwhile=False)
    # THEN all six are in the work queue, bodies unchanged, none left behind
    assert (counts.moved, counts.failed) == (6, 0)
    moved: dict[str, dict[str, Any]] = {}
    for _ in range(6):
        reply = bridge.sqs.receive_message(QueueUrl=s.queue_url, MaxNumberOfMessages=10,
                                           MessageAttributeNames=["All"], VisibilityTimeout=30)
        moved.update({m["MessageId"]: m for m in reply.get("Messages", [])})
    assert {m["Body"] for m in moved.values()} == bodies
    assert {attribute(m, "replay_count") for m in moved.values()} == {"1"}
    assert {attribute(m, "direction") for m in moved.values()} == {"segment_to_userflow"}
    assert all_dead_letters(bridge) == []


def test_a_letter_the_work_queue_refuses_stays_parked(upstream: FakeUpstream) -> None:
    # GIVEN a work queue that takes messages of at most 1,024 bytes, and a 2 KB letter
    bridge = make_bridge(upstream.url)
    s = bridge.runtime.settings
    bridge.sqs.set_queue_attributes(QueueUrl=s.queue_url,
                                    Attributes={"MaximumMessageSize": "1024"})
    body = big_letter(0, 2000)
    bridge.sqs.send_message(QueueUrl=s.dead_letter_queue_url, MessageBody=body)
    # WHEN replayed THEN it is reported failed, tried once, not lost, and the run ends
    counts = run_replay(bridge, deliver_meanwhile=False)
    assert (counts.moved, counts.failed) == (0, 1)
    [letter] = all_dead_letters(bridge)
    assert letter["Body"] == body
    assert json.loads(letter["Body"])["event"]["messageId"] == "m-0"


def entry(n_bytes: int, i: int = 0) -> dict[str, Any]:
    return {"Id": str(i), "MessageBody": "x" * n_bytes, "MessageAttributes": {
        "direction": {"DataType": "String", "StringValue": "segment_to_userflow"}}}


def test_entry_size_counts_body_and_each_attribute() -> None:
    # body 10 + "direction" 9 + "String" 6 + "segment_to_userflow" 19
    assert entry_bytes(entry(10)) == 44


@pytest.mark.parametrize(("sizes", "groups"), [
    ([100] * 25, [10, 10, 5]),                       # by count
    ([240_000] * 6, [1, 1, 1, 1, 1, 1]),             # by bytes: two never share a call
    ([120_000, 120_000, 30_000, 240_000], [2, 1, 1]),
    ([300_000, 10], [1, 1]),                          # too large alone: its own call
])
def test_send_batches_cut_by_count_and_bytes(sizes: list[int], groups: list[int]) -> None:
    batches = list(send_batches([entry(n, i) for i, n in enumerate(sizes)]))
    assert [len(b) for b in batches] == groups
    assert [e["Id"] for b in batches for e in b] == [str(i) for i in range(len(sizes))]
    assert all(sum(entry_bytes(e) for e in b) <= SEND_BATCH_BYTES for b in batches
               if len(b) > 1)


@pytest.mark.parametrize(("values", "kept"), [
    ({"replay_run": "ab12-cd", "replay_count": "3"}, {"replay_run": "ab12-cd",
                                                      "replay_count": "3"}),
    ({"replay_run": "../etc", "replay_count": "-1"}, {}),
    ({"replay_run": "x" * 65, "replay_count": "9" * 7}, {}),
    ({"replay_run": 5, "replay_count": None, "other": "y"}, {}),
    ({"replay_count": "٣"}, {}),  # a digit, but not an ASCII one
])
def test_replay_markers_keep_only_well_formed_values(values: dict[str, object],
                                                     kept: dict[str, str]) -> None:
    assert replay_markers(values) == kept


def test_a_forged_marker_is_not_carried_onto_the_dead_letter(upstream: FakeUpstream) -> None:
    # GIVEN a message in the work queue with malformed replay attributes, that fails for good
    bridge = make_bridge(upstream.url)
    s = bridge.runtime.settings
    bridge.sqs.send_message(QueueUrl=s.queue_url, MessageBody="{garbage", MessageAttributes={
        "replay_run": {"DataType": "String", "StringValue": "not a run id!"},
        "replay_count": {"DataType": "Number", "StringValue": "2"}})
    bridge.pump()
    # THEN its dead letter carries the well-formed count and not the malformed run id
    [letter] = all_dead_letters(bridge)
    assert attribute(letter, "replay_count") == "2"
    assert attribute(letter, "replay_run") is None
    assert attribute(letter, "dead_letter_reason") == "invalid_message"
