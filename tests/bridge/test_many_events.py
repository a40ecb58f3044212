"""Several events per SQS message: packing limits, decoding, and per-event outcomes when only
part of a message can be delivered."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from bridge_code.envelope import (
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_EVENTS,
    InvalidEnvelope,
    decode_envelope,
    decode_envelopes,
    pack_envelopes,
    text_size,
)
from bridge_code.signatures import sign_segment
from tests.bridge.helpers import (
    SHARED_SECRET,
    FakeUpstream,
    Fault,
    answer,
    apigw_event,
    load_event,
    make_bridge,
)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with mock_aws(), FakeUpstream() as fake:
        yield fake


def texts(n: int, size: int = 40) -> list[str]:
    return [json.dumps({"i": i, "pad": "x" * size}) for i in range(n)]


def test_events_are_packed_in_order_within_the_count_limit() -> None:
    # GIVEN more small events than one message may carry
    events = texts(MAX_MESSAGE_EVENTS * 2 + 1)
    # WHEN packed
    bodies = pack_envelopes("segment_to_userflow", events, "t", "r")
    # THEN three messages, full ones first, the last a single-event (version 1) envelope
    assert [len(decode_envelopes(b)) for b in bodies] == [MAX_MESSAGE_EVENTS] * 2 + [1]
    assert json.loads(bodies[-1])["v"] == 1
    decoded = [e.event["i"] for b in bodies for e in decode_envelopes(b)]
    assert decoded == list(range(len(events)))


def test_events_are_packed_within_the_message_size() -> None:
    # GIVEN 30 events of about 20 KB: all of them cannot fit one message
    events = texts(30, 20_000)
    bodies = pack_envelopes("segment_to_userflow", events, "t", "r")
    # THEN each message stays under SQS's limit and no event is lost or reordered
    assert len(bodies) > 1
    assert all(text_size(b) <= MAX_MESSAGE_BYTES for b in bodies)
    assert [e.event["i"] for b in bodies for e in decode_envelopes(b)] == list(range(30))


def test_a_version_2_message_is_refused_where_one_event_is_expected() -> None:
    [body] = pack_envelopes("userflow_to_segment", texts(2), "t", "r")
    with pytest.raises(InvalidEnvelope, match="2 events"):
        decode_envelope(body)


@pytest.mark.parametrize("body", [
    '{"v":2,"direction":"segment_to_userflow","events":[]}',
    '{"v":2,"direction":"segment_to_userflow","events":[{}, 3]}',
    '{"v":2,"direction":"segment_to_userflow","events":{}}',
    '{"v":2,"direction":"segment_to_userflow","receives":-1,"events":[{}]}',
    '{"v":3,"direction":"segment_to_userflow","events":[{}]}',
])
def test_malformed_version_2_messages_are_invalid(body: str) -> None:
    with pytest.raises(InvalidEnvelope):
        decode_envelopes(body)


def event(fixture: str, i: int) -> dict[str, Any]:
    data: dict[str, Any] = load_event(fixture)
    data.update(messageId=f"many-{i}", userId=f"user-{i}", groupId="g-1")
    return data


def test_partial_failure_keeps_each_events_outcome(upstream: FakeUpstream) -> None:
    # GIVEN one signed Segment batch of three events, queued as one message: Userflow takes
    # one of the two /users calls (identify, group), refuses the other for good (422), and
    # fails the track for now (500)
    bridge = make_bridge(upstream.url, segment_batching=True)
    events = [event("segment_identify.json", 1), event("segment_group.json", 2),
              event("segment_track.json", 3)]
    first = json.dumps(events[0], separators=(",", ":"), ensure_ascii=False).encode()
    status, reply = answer(bridge.ingest.handle(apigw_event(
        "POST", "/segment", json.dumps(events).encode(),
        {"x-signature": sign_segment(first, SHARED_SECRET)})))
    assert (status, reply["accepted"]) == (200, 3)
    upstream.fault(Fault("/users", count=1, status=422))
    upstream.fault(Fault("/events", count=3, status=500))  # every attempt of the first try
    queue = str(bridge.runtime.settings.queue_url)
    [message] = bridge.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                                           AttributeNames=["All"])["Messages"]
    # WHEN the delivery handler gets that message
    result = bridge.delivery.handle({"Records": [{
        "messageId": message["MessageId"], "body": message["Body"],
        "attributes": {"ApproximateReceiveCount": "1"}}]})
    # THEN the message is settled (not handed back whole): the failed event alone is queued
    # again, remembering its receive; the refused one is dead-lettered on its own
    assert result == {"batchItemFailures": []}
    bridge.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    [again] = bridge.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                                         VisibilityTimeout=0)["Messages"]
    [requeued] = decode_envelopes(again["Body"])
    assert (requeued.event["type"], requeued.receives) == ("track", 1)
    [letter] = bridge.dead_letters()
    assert decode_envelope(letter["Body"]).event["type"] in {"identify", "group"}
    assert letter["MessageAttributes"]["dead_letter_reason"]["StringValue"] == "rejected"
    # AND once the queue is pumped, each event reached Userflow exactly once as accepted
    bridge.pump()
    paths = Counter(r.path for r in upstream.received if 200 <= r.status < 300)
    assert paths == Counter({"/users": 1, "/events": 1})
    assert Counter(r.path for r in upstream.received)["/users"] == 2  # none sent twice
    s = bridge.runtime.stats.snapshot()["segment_to_userflow"]
    assert (s["accepted"], s["delivered"], s["dead_lettered"]) == (3, 2, 1)


def test_all_events_failing_hands_the_message_back_once(upstream: FakeUpstream) -> None:
    # GIVEN a two-event message whose events both fail for now
    bridge = make_bridge(upstream.url)
    [body] = pack_envelopes("segment_to_userflow", [
        json.dumps(event("segment_track.json", i)) for i in (1, 2)], "t", "r")
    upstream.fault(Fault("/events", count=100, status=503))
    # WHEN delivered
    result = bridge.delivery.handle({"Records": [{
        "messageId": "m-1", "body": body, "attributes": {"ApproximateReceiveCount": "1"}}]})
    # THEN SQS is asked to redeliver the message, named once; nothing is queued again
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert bridge.queue_depth(str(bridge.runtime.settings.queue_url)) == 0
