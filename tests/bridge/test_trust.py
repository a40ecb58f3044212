"""The trust boundary, tried as an attacker would: forged batches, replays, repeats, odd input.

Every test here is an attack or a failure that once got through: a captured signed event
extended into a batch, the same request sent three times, a genuine retry after a 503, an
event delivered twice through SQS or the dead-letter queue, headers and bodies that made the
bridge answer 500, and inputs that grew its memory without bound.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from bridge_code import logs
from bridge_code.claims import ClaimedCalls
from bridge_code.envelope import decode_envelope
from bridge_code.ingest import ENQUEUE_ATTEMPTS
from bridge_code.mapping import MappingConfig, segment_event_to_userflow
from bridge_code.replay import redrive
from bridge_code.signatures import json_stringify, sign_segment
from sandbox.local_bridge import sqs_lambda_event
from tests.bridge.helpers import (
    SHARED_SECRET,
    Bridge,
    FakeUpstream,
    Fault,
    MemoryLedger,
    answer,
    apigw_event,
    load_event,
    make_bridge,
    now_iso,
)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with mock_aws(), FakeUpstream() as fake:
        yield fake


def track(i: int, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = load_event("segment_track.json")
    event.update(messageId=f"m-{i}", userId=f"user-{i}", **changes)
    return event


def signed_single(event: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(event).encode()
    return apigw_event("POST", "/segment", body, {"x-signature": sign_segment(body,
                                                                              SHARED_SECRET)})


def signed_batch(events: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch as Segment sends it: signed over its first event alone."""
    body = json.dumps(events).encode()
    first = json_stringify(events[0]).encode("utf-8")
    return apigw_event("POST", "/segment", body, {"x-signature": sign_segment(first,
                                                                              SHARED_SECRET)})


def events_sent(upstream: FakeUpstream) -> Counter[str]:
    return Counter(f'{r.body["user_id"]}/{r.body["name"]}' for r in upstream.delivered("/events"))


@pytest.fixture
def log_to_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Log lines on this test's stdout (a local runner started earlier moves them away)."""
    monkeypatch.setattr(logs, "_target", None)


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def queued_events(bridge: Bridge) -> list[dict[str, Any]]:
    reply = bridge.sqs.receive_message(QueueUrl=bridge.runtime.settings.queue_url,
                                       MaxNumberOfMessages=10, VisibilityTimeout=0)
    return [decode_envelope(m["Body"]).event for m in reply.get("Messages", [])]


# --- forged batches ---------------------------------------------------------------------------

def test_forged_batch_is_refused_on_a_stack_that_does_not_batch(upstream: FakeUpstream) -> None:
    # GIVEN one genuinely signed event, wrapped by an attacker with events of their own
    bridge = make_bridge(upstream.url)
    genuine = track(1)
    forged = {"type": "identify", "userId": "victim", "messageId": "f-1",
              "traits": {"role": "admin"}}
    # WHEN sent with the genuine event's signature
    status, reply = answer(bridge.ingest.handle(signed_batch([genuine, forged])))
    # THEN it is refused and nothing reaches Userflow
    assert status == 401 and "does not match" in reply["error"]
    bridge.pump()
    assert upstream.received == []


def test_forged_batch_around_an_accepted_event_delivers_nothing(upstream: FakeUpstream) -> None:
    # GIVEN a batching stack that accepted a genuine batch
    bridge = make_bridge(upstream.url, segment_batching=True)
    genuine = [track(1), track(2)]
    assert answer(bridge.ingest.handle(signed_batch(genuine)))[0] == 200
    # WHEN an attacker appends events to its captured first event and sends it again
    forged = {"type": "identify", "userId": "victim", "messageId": "f-1",
              "traits": {"role": "admin"}}
    status, reply = answer(bridge.ingest.handle(signed_batch([genuine[0], forged])))
    # THEN the bridge answers 2xx (a replay), enqueues nothing, and only the genuine events
    # reach Userflow
    assert status == 200 and reply["accepted"] == 0 and reply["skipped"] == {"replay": 2}
    bridge.pump()
    assert upstream.delivered("/users") == []
    assert events_sent(upstream) == Counter({"user-1/order_completed": 1,
                                             "user-2/order_completed": 1})


def test_batch_signed_by_a_stale_event_is_refused(upstream: FakeUpstream) -> None:
    # GIVEN a signed event Segment received two days ago (captured from an old log)
    bridge = make_bridge(upstream.url, segment_batching=True)
    old = track(1, receivedAt=now_iso(-2 * 86400))
    # THEN neither it nor a batch built on it is accepted
    for request in (signed_batch([old, track(2)]), signed_single(old)):
        status, reply = answer(bridge.ingest.handle(request))
        assert status == 401 and "acceptance window" in reply["error"]
    assert queued_events(bridge) == []


@pytest.mark.parametrize(("changes", "reason"), [
    ({"receivedAt": now_iso(3600)}, "in the future"),
    ({"receivedAt": None, "timestamp": None}, "no receivedAt or timestamp"),
    ({"receivedAt": "yesterday", "timestamp": 12}, "no receivedAt or timestamp"),
])
def test_signed_event_of_unknown_or_future_age_is_refused(changes: dict[str, Any],
                                                          reason: str) -> None:
    with mock_aws():
        bridge = make_bridge()
        status, reply = answer(bridge.ingest.handle(signed_single(track(1, **changes))))
        assert status == 401 and reason in reply["error"]


def test_acceptance_window_falls_back_to_the_timestamp() -> None:
    with mock_aws():
        bridge = make_bridge()
        event = track(1, timestamp=now_iso(-60))
        del event["receivedAt"]
        assert answer(bridge.ingest.handle(signed_single(event)))[0] == 200


# --- replays ----------------------------------------------------------------------------------

def test_the_same_request_three_times_is_one_userflow_event(upstream: FakeUpstream) -> None:
    bridge = make_bridge(upstream.url)
    request = signed_single(track(1))
    replies = [answer(bridge.ingest.handle(request)) for _ in range(3)]
    assert [status for status, _ in replies] == [200, 200, 200]
    assert [reply["accepted"] for _, reply in replies] == [1, 0, 0]
    bridge.pump()
    assert events_sent(upstream) == Counter({"user-1/order_completed": 1})
    assert bridge.runtime.stats.snapshot()["segment_to_userflow"]["skipped"] == {"replay": 2}


def test_segment_retry_after_a_503_is_accepted_not_a_replay(
        upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the queue refuses the first delivery (every enqueue attempt)
    bridge = make_bridge(upstream.url)
    sqs = bridge.sqs
    real_send = sqs.send_message_batch
    failures = {"left": ENQUEUE_ATTEMPTS}

    def flaky_send(**kwargs: Any) -> Any:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ConnectionError("queue unavailable")
        return real_send(**kwargs)

    monkeypatch.setattr(sqs, "send_message_batch", flaky_send)
    request = signed_single(track(1))
    assert answer(bridge.ingest.handle(request))[0] == 503
    # WHEN Segment retries the same request
    status, reply = answer(bridge.ingest.handle(request))
    # THEN it is accepted, not mistaken for a replay, and delivered once
    assert (status, reply["accepted"], reply["skipped"]) == (200, 1, {})
    bridge.pump()
    assert events_sent(upstream) == Counter({"user-1/order_completed": 1})


def test_concurrent_copy_of_an_event_being_accepted_is_asked_to_retry(
        upstream: FakeUpstream) -> None:
    # GIVEN another request holds the claim on this messageId (it is enqueueing right now)
    bridge = make_bridge(upstream.url)
    ledger = bridge.runtime.ledger
    assert ledger is not None
    ledger.claim("accepted", "m-1", 60, 600)
    # THEN a copy gets a 4xx that Segment retries (429), not a 5xx, and nothing is queued
    result = bridge.ingest.handle(signed_single(track(1)))
    assert result["statusCode"] == 429 and result["headers"]["retry-after"]
    assert queued_events(bridge) == []


# --- no second effect -------------------------------------------------------------------------

def test_segment_redelivery_of_an_accepted_event_is_not_sent_again(
        upstream: FakeUpstream) -> None:
    # GIVEN a batching stack that delivered a batch of two events
    bridge = make_bridge(upstream.url, segment_batching=True)
    assert answer(bridge.ingest.handle(signed_batch([track(1), track(2)])))[0] == 200
    bridge.pump()
    # WHEN Segment redelivers the second one in a later batch (a new first event signs it)
    assert answer(bridge.ingest.handle(signed_batch([track(3), track(2)])))[0] == 200
    bridge.pump()
    # THEN Userflow got each event once
    assert events_sent(upstream) == Counter({f"user-{i}/order_completed": 1 for i in (1, 2, 3)})
    s = bridge.runtime.stats.snapshot()["segment_to_userflow"]
    assert s["duplicates"] == 1 and s["accepted"] == s["delivered"] == 4


def test_sqs_redelivery_after_a_successful_call_is_not_sent_again(
        upstream: FakeUpstream) -> None:
    # GIVEN an invocation that delivered its batch and then crashed before SQS deleted it
    bridge = make_bridge(upstream.url)
    for i in range(3):
        assert answer(bridge.ingest.handle(signed_single(track(i))))[0] == 200
    queue = str(bridge.runtime.settings.queue_url)
    messages = bridge.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                                          AttributeNames=["All"])["Messages"]
    assert len(messages) == 3
    assert bridge.delivery.handle(sqs_lambda_event(messages, "arn:q")) == {
        "batchItemFailures": []}
    # WHEN SQS hands the same messages out again (visibility timeout 0 here)
    bridge.pump()
    # THEN no event reaches Userflow twice
    assert events_sent(upstream) == Counter({f"user-{i}/order_completed": 1 for i in range(3)})
    assert bridge.runtime.stats.snapshot()["segment_to_userflow"]["duplicates"] == 3


def test_dead_letter_replay_of_delivered_events_makes_no_second_call(
        upstream: FakeUpstream) -> None:
    # GIVEN delivered events whose messages also sit in the dead-letter queue (AWS's redrive
    # policy moved them after repeated crashes before the delete)
    bridge = make_bridge(upstream.url)
    s = bridge.runtime.settings
    for i in range(2):
        assert answer(bridge.ingest.handle(signed_single(track(i))))[0] == 200
    queue, dlq = str(s.queue_url), str(s.dead_letter_queue_url)
    messages = bridge.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    for message in messages:
        bridge.sqs.send_message(QueueUrl=dlq, MessageBody=message["Body"])
    bridge.pump()
    assert len(upstream.delivered("/events")) == 2
    # WHEN the operator replays the dead-letter queue
    assert redrive(bridge.sqs, dlq, queue, wait_seconds=0).moved == 2
    bridge.pump()
    # THEN Userflow is not called again for them
    assert len(upstream.received) == 2
    assert events_sent(upstream) == Counter({f"user-{i}/order_completed": 1 for i in range(2)})


def test_delivery_writes_one_ledger_item_per_event_and_one_per_invocation(
        upstream: FakeUpstream) -> None:
    # GIVEN a batching stack, and every write to the ledger's table counted by key kind
    bridge = make_bridge(upstream.url, segment_batching=True)
    writes: Counter[str] = Counter()

    def count(params: dict[str, Any], **_: Any) -> None:
        key = params.get("Item") or params.get("Key") or {}
        writes[key["pk"]["S"].split("#", 1)[0]] += 1

    events = bridge.runtime.aws.dynamodb.meta.events
    for operation in ("PutItem", "UpdateItem", "DeleteItem"):
        events.register(f"provide-client-params.dynamodb.{operation}", count)
    # WHEN Segment delivers a batch of 20 events and one invocation delivers them
    assert answer(bridge.ingest.handle(signed_batch([track(i) for i in range(20)])))[0] == 200
    bridge.pump()
    # THEN each event cost one write, the invocation one more, the request two (accept)
    assert len(upstream.delivered("/events")) == 20
    assert writes == Counter({"delivered": 20, "settled": 1, "accepted": 2})


def _crash_after_calls(bridge: Bridge, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Deliver what is queued in an invocation that dies after its calls, before it settles
    its claims and before SQS deletes the messages; return those messages."""
    queue = str(bridge.runtime.settings.queue_url)
    messages = bridge.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                                          AttributeNames=["All"])["Messages"]
    with monkeypatch.context() as patched:
        patched.setattr(ClaimedCalls, "settle", lambda self: None)
        bridge.delivery.handle(sqs_lambda_event(messages, "arn:q"))
    return list(messages)


@pytest.mark.parametrize("settled", [True, False])
def test_a_repeat_after_the_hold_is_sent_again_only_if_the_holder_never_settled(
        upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, settled: bool) -> None:
    # GIVEN two events delivered by an invocation that settled its claims, or crashed first
    clock = [time.time()]
    bridge = make_bridge(upstream.url)
    bridge.runtime.ledger = MemoryLedger(lambda: clock[0])
    for i in range(2):
        assert answer(bridge.ingest.handle(signed_single(track(i))))[0] == 200
    if settled:
        queue = str(bridge.runtime.settings.queue_url)
        messages = bridge.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                                              AttributeNames=["All"])["Messages"]
        bridge.delivery.handle(sqs_lambda_event(messages, "arn:q"))
    else:
        messages = _crash_after_calls(bridge, monkeypatch)
    assert len(upstream.delivered("/events")) == 2
    # WHEN SQS hands the same messages out again, long after every claim's hold
    clock[0] += 3600
    bridge.delivery.handle(sqs_lambda_event(messages, "arn:q"))
    s = bridge.runtime.stats.snapshot()["segment_to_userflow"]
    if settled:
        # THEN a settled delivery is not repeated
        assert len(upstream.delivered("/events")) == 2 and s["duplicates"] == 2
        assert s["ambiguous"] == 0
    else:
        # THEN nothing tells a crash after the call from one before it: the events go again,
        # and each second delivery is counted ambiguous and logged, not hidden
        assert events_sent(upstream) == Counter({f"user-{i}/order_completed": 2 for i in (0, 1)})
        assert s["ambiguous"] == 2


@pytest.mark.usefixtures("log_to_stdout")
def test_answer_lost_to_a_timeout_is_counted_ambiguous(upstream: FakeUpstream,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN Userflow takes an event but answers after the bridge's timeout
    bridge = make_bridge(upstream.url, upstream_timeout_seconds=0.3)
    upstream.fault(Fault("/events", count=1, delay_s=1.0, status=201))
    assert answer(bridge.ingest.handle(signed_single(track(1))))[0] == 200
    bridge.pump()
    time.sleep(1.0)  # let the slow request finish on the server side
    # THEN the retry may have made a second event: that is counted and logged, not hidden
    assert 1 <= len(upstream.delivered("/events")) <= 2
    s = bridge.runtime.stats.snapshot()["segment_to_userflow"]
    assert s["ambiguous"] == 1 and s["delivered"] == 1
    lines = [json.loads(line) for line in log_lines(capsys)]
    assert [line["message_id"] for line in lines if line["message"] == "ambiguous delivery"]


def test_delivery_left_uncertain_is_ambiguous_when_it_finally_succeeds(
        upstream: FakeUpstream) -> None:
    # GIVEN every attempt of the first invocation times out (the outcome is unknown)
    bridge = make_bridge(upstream.url, upstream_timeout_seconds=0.2, max_attempts=1)
    upstream.fault(Fault("/events", count=1, delay_s=0.6, status=201))
    assert answer(bridge.ingest.handle(signed_single(track(1))))[0] == 200
    bridge.pump()
    time.sleep(0.6)
    # THEN the redelivered attempt succeeds and is counted ambiguous
    s = bridge.runtime.stats.snapshot()["segment_to_userflow"]
    assert (s["requeued"], s["delivered"], s["ambiguous"]) == (1, 1, 1)


def test_no_ledger_table_means_segment_to_userflow_is_not_configured() -> None:
    with mock_aws():
        bridge = make_bridge().with_settings(ledger_table=None)
        bridge.runtime.ledger = None
        status, reply = answer(bridge.ingest.handle(signed_single(track(1))))
        assert status == 503 and "BRIDGE_LEDGER_TABLE" in reply["error"]


# --- hostile input ----------------------------------------------------------------------------

ODD_USERFLOW_HEADERS = [
    "t=\u00b2,v1=00",
    "t=" + "9" * 5000 + ",v1=00",
    "t=1,v1=\u00e9\u00e9",
    "t=1,v1=" + "\u0661" * 64,
    "t=,v1=",
    ",,,=,=",
    "t=1" + ",v1=" + "a" * 64 * 20,
    "\x00",
]


@pytest.mark.parametrize("header", ODD_USERFLOW_HEADERS)
def test_odd_userflow_signature_headers_are_4xx(header: str) -> None:
    with mock_aws():
        bridge = make_bridge()
        result = bridge.ingest.handle(apigw_event("POST", "/userflow", b"{}",
                                                  {"userflow-signature": header}))
        assert result["statusCode"] == 401, result["body"]


@pytest.mark.parametrize("header", ["\u00e9" * 40, "0" * 41, "g" * 40, "0" * 5000, ""])
@pytest.mark.parametrize("batching", [False, True])
def test_odd_segment_signature_headers_are_4xx(header: str, batching: bool) -> None:
    with mock_aws():
        bridge = make_bridge(segment_batching=batching)
        result = bridge.ingest.handle(apigw_event("POST", "/segment", b"[{}]",
                                                  {"x-signature": header}))
        assert result["statusCode"] == 401, result["body"]


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "1E+999", "NaN", "-Infinity"])
def test_numbers_json_cannot_carry_are_400(literal: str) -> None:
    with mock_aws():
        bridge = make_bridge()
        text = json.dumps(track(1)).replace('"properties": {', f'"properties": {{"a": {literal},')
        body = text.encode()
        request = apigw_event("POST", "/segment", body, {"x-signature": sign_segment(
            body, SHARED_SECRET)})
        status, reply = answer(bridge.ingest.handle(request))
        assert (status, reply["error"]) == (400, "request body is not valid JSON")
        assert queued_events(bridge) == []


def test_segment_event_over_32_kb_is_refused_with_the_reason() -> None:
    with mock_aws():
        bridge = make_bridge()
        status, reply = answer(bridge.ingest.handle(signed_single(
            track(1, properties={"notes": "x" * 40_000}))))
        assert status == 413 and "32768" in reply["error"]


def test_oversize_event_in_a_batch_is_skipped_the_rest_accepted() -> None:
    with mock_aws():
        bridge = make_bridge(segment_batching=True)
        # "é" is 2 bytes in UTF-8 and 6 in escaped ASCII: 12,000 of them fit Segment's cap
        fits = track(2, properties={"notes": "\u00e9" * 12_000})
        status, reply = answer(bridge.ingest.handle(signed_batch([
            track(1), track(3, properties={"notes": "x" * 40_000}), fits])))
        assert (status, reply["accepted"], reply["skipped"]) == (200, 2, {"oversize": 1})


@pytest.mark.parametrize("batching", [False, True])
def test_unsigned_large_array_is_refused_cheaply(batching: bool) -> None:
    with mock_aws():
        bridge = make_bridge(segment_batching=batching)
        # One element holding many small objects: checking it as a signed first event once
        # meant parsing and re-serializing all of it
        body = json.dumps([[{"type": "track", "a": "x" * 40}] * 7500]).encode()
        assert 450_000 < len(body) < 512 * 1024
        request = apigw_event("POST", "/segment", body, {"x-signature": "0" * 40})
        assert bridge.ingest.handle(request)["statusCode"] == 401  # warms the secret cache
        costs = []
        for _ in range(15):
            started = time.process_time()
            assert bridge.ingest.handle(request)["statusCode"] == 401
            costs.append(time.process_time() - started)
        # Parsing the whole element took about 10 ms; a bounded prefix and an HMAC about 1.
        assert sorted(costs)[len(costs) // 2] < 0.004, costs


def test_oversize_base64_body_is_refused_before_decoding() -> None:
    with mock_aws():
        bridge = make_bridge()
        event = apigw_event("POST", "/segment", None)
        event["body"] = base64.b64encode(b"x" * (1024 * 1024)).decode()
        event["isBase64Encoded"] = True
        status, reply = answer(bridge.ingest.handle(event))
        assert status == 413 and "limit" in reply["error"]


@pytest.mark.usefixtures("log_to_stdout")
def test_long_paths_are_not_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    with mock_aws():
        bridge = make_bridge()
        path = "/" + "a" * 100_000
        status, reply = answer(bridge.ingest.handle(apigw_event("POST", path, b"{}")))
        assert status == 404 and len(reply["error"]) < 200
        lines = log_lines(capsys)
        assert lines and max(len(line) for line in lines) < 1000


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_stays_bounded_across_unique_large_event_names() -> None:
    # GIVEN 1,000 track events, each with a unique 30 KB event name (under Segment's cap)
    config = MappingConfig()
    before = _rss_bytes()
    for i in range(1000):
        name = f"{i:04d}" + "Ab" * 15_000
        call = segment_event_to_userflow(
            {"type": "track", "userId": "u1", "event": name, "properties": {name: 1}}, config)
        assert not isinstance(call, str)
    # THEN the process keeps none of them (a cache of names would hold about 120 MB)
    grown = _rss_bytes() - before
    assert grown < 16 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB"
