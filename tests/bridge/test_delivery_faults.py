"""Delivery under upstream faults, against moto and a fake Userflow/Segment over real HTTP.

Every run ends with the same books: accepted = delivered + dead-lettered, no event delivered
twice except where idempotency absorbs it (Segment messageId, Userflow /users upsert, and a
request whose reply was lost to a timeout), and a replay delivers the dead letters.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from bridge_code import delivery
from bridge_code.envelope import Envelope
from bridge_code.replay import redrive
from tests.bridge.helpers import (
    USERFLOW_KEY,
    WRITE_KEY,
    Bridge,
    FakeUpstream,
    Fault,
    answer,
    free_port,
    load_event,
    make_bridge,
    segment_request,
    userflow_request,
)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with mock_aws(), FakeUpstream() as fake:
        yield fake


def track(i: int) -> dict[str, Any]:
    event: dict[str, Any] = load_event("segment_track.json")
    event.update(messageId=f"m-{i}", userId=f"user-{i}")
    return event


def identify(i: int) -> dict[str, Any]:
    event: dict[str, Any] = load_event("segment_identify.json")
    event.update(messageId=f"id-{i}", userId=f"user-{i}")
    return event


def notification(i: int) -> dict[str, Any]:
    event: dict[str, Any] = load_event("userflow_event_tracked.json")
    event["id"] = f"wn_{i}"
    event["data"]["object"]["user_id"] = f"user-{i}"
    return event


def ingest_segment(bridge: Bridge, events: list[dict[str, Any]]) -> None:
    """One delivery per event, as a destination that does not batch sends them."""
    for event in events:
        status, reply = answer(bridge.ingest.handle(segment_request(event)))
        assert (status, reply["accepted"]) == (200, 1), reply


def ingest_userflow(bridge: Bridge, notifications: list[dict[str, Any]]) -> None:
    for item in notifications:
        assert answer(bridge.ingest.handle(userflow_request(item)))[0] == 200


def replay(bridge: Bridge) -> int:
    s = bridge.runtime.settings
    assert s.dead_letter_queue_url and s.queue_url
    return redrive(bridge.sqs, s.dead_letter_queue_url, s.queue_url, wait_seconds=0,
                   stats=bridge.runtime.stats).moved


def assert_books_balance(bridge: Bridge) -> dict[str, Any]:
    """accepted + replayed = delivered + dead-lettered, per direction, once the queue is empty."""
    assert bridge.queue_depth(str(bridge.runtime.settings.queue_url)) == 0
    snapshot = bridge.runtime.stats.snapshot()
    for direction in ("segment_to_userflow", "userflow_to_segment"):
        s = snapshot[direction]
        assert s["accepted"] + s["replayed"] == s["delivered"] + s["dead_lettered"], (
            direction, s)
    return snapshot


def event_keys(upstream: FakeUpstream) -> Counter[str]:
    """Userflow events as delivered, one key per distinct event."""
    return Counter(f'{r.body["user_id"]}/{r.body["name"]}' for r in upstream.delivered("/events"))


def segment_message_ids(upstream: FakeUpstream) -> Counter[str]:
    return Counter(m["messageId"] for r in upstream.delivered("/v1/batch")
                   for m in r.body["batch"])


def test_userflow_429_retry_after_is_honoured_and_each_event_sent_once(
        upstream: FakeUpstream) -> None:
    # GIVEN Userflow rate-limits the first call, asking for 1 s
    bridge = make_bridge(upstream.url)
    upstream.fault(Fault("/events", count=1, status=429, headers={"Retry-After": "1"}))
    ingest_segment(bridge, [track(i) for i in range(3)])
    # WHEN the queue is delivered
    started = time.monotonic()
    bridge.pump()
    # THEN the retry waited as asked, and every event reached Userflow exactly once
    assert time.monotonic() - started >= 1.0
    assert event_keys(upstream) == Counter({f"user-{i}/order_completed": 1 for i in range(3)})
    snapshot = assert_books_balance(bridge)
    assert snapshot["segment_to_userflow"]["delivered"] == 3
    assert snapshot["segment_to_userflow"]["retried"] >= 1
    [first] = [r for r in upstream.received if r.status == 429]
    assert first.headers["Authorization"] == f"Bearer {USERFLOW_KEY}"
    assert first.headers["Userflow-Version"] == "2020-01-03"


def test_retry_after_beyond_the_deadline_is_left_to_sqs(upstream: FakeUpstream) -> None:
    # GIVEN Userflow asks for 60 s and the invocation has about 1.5 s left
    bridge = make_bridge(upstream.url)
    upstream.fault(Fault("/events", count=1, status=429, headers={"Retry-After": "60"}))
    ingest_segment(bridge, [track(0)])
    record = bridge.sqs.receive_message(QueueUrl=bridge.runtime.settings.queue_url,
                                        AttributeNames=["All"])["Messages"][0]
    event = {"Records": [{"messageId": record["MessageId"], "body": record["Body"],
                          "attributes": record["Attributes"]}]}

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 1500

    # WHEN delivered THEN the handler returns promptly and hands the message back to SQS
    started = time.monotonic()
    result = bridge.delivery.handle(event, Context())
    assert time.monotonic() - started < 1.5
    assert result == {"batchItemFailures": [{"itemIdentifier": record["MessageId"]}]}


def test_userflow_500_becomes_a_dead_letter_then_replay_delivers(upstream: FakeUpstream) -> None:
    # GIVEN Userflow fails every call for a while
    bridge = make_bridge(upstream.url, max_attempts=2, poison_receive_count=2)
    upstream.fault(Fault("/events", count=1000, status=500))
    ingest_segment(bridge, [track(i) for i in range(4)])
    # WHEN the queue is delivered
    bridge.pump()
    # THEN after 2 receives each message is dead-lettered with the reason
    letters = bridge.dead_letters()
    assert len(letters) == 4
    assert {m["MessageAttributes"]["dead_letter_reason"]["StringValue"] for m in letters} == {
        "retries_exhausted"}
    assert "HTTP 500" in letters[0]["MessageAttributes"]["dead_letter_detail"]["StringValue"]
    assert upstream.delivered("/events") == []
    assert_books_balance(bridge)
    # WHEN Userflow recovers and the dead letters are replayed
    upstream.faults.clear()
    assert replay(bridge) == 4
    bridge.pump()
    # THEN each event is delivered exactly once and the books still balance
    assert event_keys(upstream) == Counter({f"user-{i}/order_completed": 1 for i in range(4)})
    snapshot = assert_books_balance(bridge)
    assert snapshot["segment_to_userflow"]["delivered"] == 4
    assert bridge.dead_letters() == []


def test_userflow_slower_than_the_timeout_is_retried(upstream: FakeUpstream) -> None:
    # GIVEN the first /users call hangs longer than the client timeout
    bridge = make_bridge(upstream.url, upstream_timeout_seconds=0.3)
    upstream.fault(Fault("/users", count=1, delay_s=1.0, status=200))
    ingest_segment(bridge, [identify(i) for i in range(3)])
    # WHEN delivered
    bridge.pump()
    # THEN every user is upserted; a repeat can only be the timed-out call, which the
    # upsert absorbs (same id, same attributes)
    time.sleep(1.0)  # let the hung request finish on the server side
    upserts = upstream.delivered("/users")
    by_user: dict[str, list[Any]] = {}
    for r in upserts:
        by_user.setdefault(r.body["id"], []).append(r.body)
    assert sorted(by_user) == [f"user-{i}" for i in range(3)]
    assert all(all(body == bodies[0] for body in bodies) for bodies in by_user.values())
    assert len(upserts) <= 3 + 1
    snapshot = assert_books_balance(bridge)
    assert snapshot["segment_to_userflow"]["retried"] >= 1


def test_connection_refused_dead_letters_then_replay_after_fix(upstream: FakeUpstream) -> None:
    # GIVEN the Userflow URL points where nothing listens
    bridge = make_bridge(f"http://127.0.0.1:{free_port()}", max_attempts=2,
                         poison_receive_count=2)
    ingest_segment(bridge, [track(i) for i in range(2)])
    bridge.pump()
    letters = bridge.dead_letters()
    assert len(letters) == 2
    assert "Error calling POST" in letters[0]["MessageAttributes"]["dead_letter_detail"][
        "StringValue"]
    assert_books_balance(bridge)
    # WHEN the URL is fixed and the dead letters replayed
    fixed = bridge.with_settings(userflow_api_url=upstream.url)
    assert replay(fixed) == 2
    fixed.pump()
    # THEN they arrive, once each
    assert event_keys(upstream) == Counter({f"user-{i}/order_completed": 1 for i in range(2)})
    assert_books_balance(fixed)


def test_segment_5xx_is_retried_and_message_ids_absorb_repeats(upstream: FakeUpstream) -> None:
    # GIVEN Segment fails twice, and Userflow delivers one notification twice
    bridge = make_bridge(upstream.url)
    upstream.fault(Fault("/v1/batch", count=2, status=503))
    notifications = [notification(i) for i in range(5)]
    ingest_userflow(bridge, [*notifications, notifications[0]])
    # WHEN delivered
    bridge.pump()
    # THEN every notification reached Segment, marked, under its stable messageId
    ids = segment_message_ids(upstream)
    assert set(ids) == {f"userflow-wn_{i}" for i in range(5)}
    batches = upstream.delivered("/v1/batch")
    assert all(m["context"]["userflowBridge"] == {"direction": "userflow-to-segment"}
               for r in batches for m in r.body["batch"])
    expected = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert batches[0].headers["Authorization"] == f"Basic {expected}"
    snapshot = assert_books_balance(bridge)
    assert snapshot["userflow_to_segment"]["accepted"] == 6
    assert snapshot["userflow_to_segment"]["retried"] >= 1


def test_permanent_4xx_dead_letters_only_the_refused_event(upstream: FakeUpstream) -> None:
    bridge = make_bridge(upstream.url)
    upstream.fault(Fault("/events", count=1, status=422))
    ingest_segment(bridge, [track(i) for i in range(3)])
    bridge.pump()
    [letter] = bridge.dead_letters()
    attributes = letter["MessageAttributes"]
    assert attributes["dead_letter_reason"]["StringValue"] == "rejected"
    assert "HTTP 422" in attributes["dead_letter_detail"]["StringValue"]
    assert attributes["direction"]["StringValue"] == "segment_to_userflow"
    assert sum(event_keys(upstream).values()) == 2
    assert_books_balance(bridge)
    assert replay(bridge) == 1
    bridge.pump()
    assert event_keys(upstream) == Counter({f"user-{i}/order_completed": 1 for i in range(3)})
    assert_books_balance(bridge)


def test_segment_batch_refusal_is_narrowed_to_the_bad_event(upstream: FakeUpstream) -> None:
    # GIVEN Segment refuses the batch and then the first event sent alone
    bridge = make_bridge(upstream.url)
    upstream.fault(Fault("/v1/batch", count=2, status=400))
    ingest_userflow(bridge, [notification(i) for i in range(3)])
    bridge.pump()
    # THEN one event is dead-lettered, the two others are delivered
    assert len(bridge.dead_letters()) == 1
    assert len(segment_message_ids(upstream)) == 2
    assert_books_balance(bridge)
    # AND once Segment takes it, replay delivers it, each messageId arriving once
    assert replay(bridge) == 1
    bridge.pump()
    assert segment_message_ids(upstream) == Counter({f"userflow-wn_{i}": 1 for i in range(3)})
    assert_books_balance(bridge)


def test_oversize_segment_event_is_dead_lettered_with_reason(upstream: FakeUpstream) -> None:
    bridge = make_bridge(upstream.url)
    big = notification(1)
    big["data"]["object"]["attributes"]["notes"] = "x" * (33 * 1024)
    ingest_userflow(bridge, [big, notification(2)])
    bridge.pump()
    [letter] = bridge.dead_letters()
    assert letter["MessageAttributes"]["dead_letter_reason"]["StringValue"] == "oversize"
    assert set(segment_message_ids(upstream)) == {"userflow-wn_2"}
    assert_books_balance(bridge)


def test_ten_userflow_events_travel_in_one_segment_call(upstream: FakeUpstream) -> None:
    bridge = make_bridge(upstream.url)
    ingest_userflow(bridge, [notification(i) for i in range(10)])
    bridge.pump()
    assert len(segment_message_ids(upstream)) == 10
    assert len(upstream.delivered("/v1/batch")) == 1
    assert bridge.runtime.stats.snapshot()["userflow_to_segment"]["upstream_calls"] == 1


def test_poison_message_goes_to_the_dead_letter_queue(upstream: FakeUpstream) -> None:
    bridge = make_bridge(upstream.url)
    bridge.sqs.send_message(QueueUrl=bridge.runtime.settings.queue_url, MessageBody="{garbage")
    bridge.pump()
    [letter] = bridge.dead_letters()
    assert letter["Body"] == "{garbage"
    assert letter["MessageAttributes"]["dead_letter_reason"]["StringValue"] == "invalid_message"


def test_direction_without_credentials_dead_letters_for_later_replay(
        upstream: FakeUpstream) -> None:
    bridge = make_bridge(upstream.url)
    unconfigured = bridge.with_settings(segment_write_key_arn=None)
    ingest_userflow(unconfigured, [notification(1)])
    unconfigured.pump()
    [letter] = unconfigured.dead_letters()
    assert letter["MessageAttributes"]["dead_letter_reason"]["StringValue"] == "not_configured"
    assert upstream.received == []


def test_lambda_entry_point_with_the_sqs_fixture(upstream: FakeUpstream,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the SQS event fixture carrying one bridge envelope, and the Lambda environment
    bridge = make_bridge(upstream.url)
    s = bridge.runtime.settings
    environment = {"QUEUE_URL": s.queue_url, "DEAD_LETTER_QUEUE_URL": s.dead_letter_queue_url,
                   "BRIDGE_LEDGER_TABLE": s.ledger_table,
                   "USERFLOW_API_KEY_ARN": s.userflow_api_key_arn,
                   "USERFLOW_API_URL": upstream.url, "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setattr(delivery, "_APP", None)
    event = load_event("sqs_batch.json")
    event["Records"][0]["body"] = Envelope("segment_to_userflow", identify(7), "now", "r").encode()
    # WHEN the handler runs THEN it reports no failure and the user was upserted
    assert delivery.handler(event, None) == {"batchItemFailures": []}
    assert [r.body["id"] for r in upstream.delivered("/users")] == ["user-7"]
    monkeypatch.setattr(delivery, "_APP", None)


def test_batch_event_that_is_not_sqs_is_harmless(upstream: FakeUpstream) -> None:
    bridge = make_bridge(upstream.url)
    assert bridge.delivery.handle({"Records": "nope"}) == {"batchItemFailures": []}
    assert bridge.delivery.handle(json.loads("{}")) == {"batchItemFailures": []}


def test_rotated_userflow_key_is_refetched_and_the_event_retried(upstream: FakeUpstream) -> None:
    # GIVEN the key in the cache was rotated: Userflow answers 401 once
    bridge = make_bridge(upstream.url)
    bridge.runtime.secrets._min_refresh = 0
    upstream.fault(Fault("/events", count=1, status=401))
    ingest_segment(bridge, [track(0)])
    new_key = "ak_rotated"
    bridge.runtime.aws.secretsmanager.put_secret_value(
        SecretId=bridge.runtime.settings.userflow_api_key_arn, SecretString=new_key)
    # WHEN delivered
    bridge.pump()
    # THEN the key is refetched, the event goes back to SQS and is delivered with the new key
    [delivered] = upstream.delivered("/events")
    assert delivered.headers["Authorization"] == f"Bearer {new_key}"
    assert bridge.dead_letters() == []
    snapshot = assert_books_balance(bridge)
    assert snapshot["segment_to_userflow"]["requeued"] == 1


def test_values_sqs_or_utf8_cannot_carry_survive_the_trip(upstream: FakeUpstream) -> None:
    # GIVEN a Segment event whose properties hold a lone surrogate, U+FFFF (SQS refuses it in
    # a body) and a control character, all valid in JSON when escaped
    odd = "a\ud800b\uffff\u0001é"
    events = [track(0), track(1)]
    events[1]["properties"]["note"] = odd
    bridge = make_bridge(upstream.url)
    ingest_segment(bridge, events)
    # AND a single Userflow notification holding U+FFFF, queued as the raw bytes received
    single = notification(2)
    single["data"]["object"]["attributes"]["note"] = "x\uffffy"
    ingest_userflow(bridge, [single])
    # WHEN delivered THEN every value arrives unchanged
    bridge.pump()
    by_user = {r.body["user_id"]: r.body for r in upstream.delivered("/events")}
    assert by_user["user-1"]["attributes"]["note"] == odd
    [message] = [m for r in upstream.delivered("/v1/batch") for m in r.body["batch"]]
    assert message["properties"]["note"] == "x\uffffy"
    assert_books_balance(bridge)
    assert bridge.dead_letters() == []
