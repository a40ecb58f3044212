"""Ingest handler, functional: API Gateway v2 fixture events in, SQS (moto) and answers out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from bridge_code import ingest, logs
from bridge_code.envelope import decode_envelope, decode_envelopes
from bridge_code.signatures import sign_segment
from tests.bridge.helpers import (
    SHARED_SECRET,
    Bridge,
    answer,
    apigw_event,
    load_event,
    make_bridge,
    segment_request,
    userflow_request,
)


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    with mock_aws():
        yield make_bridge()


def queued(bridge: Bridge) -> list[dict[str, Any]]:
    """Everything in the work queue (left visible for the next reader)."""
    messages: list[dict[str, Any]] = []
    for _ in range(10):
        reply = bridge.sqs.receive_message(QueueUrl=bridge.runtime.settings.queue_url,
                                           MaxNumberOfMessages=10, VisibilityTimeout=30,
                                           MessageAttributeNames=["All"])
        if not reply.get("Messages"):
            break
        messages += reply["Messages"]
    return messages


def test_signed_segment_batch_is_queued_as_one_message() -> None:
    with mock_aws():
        bridge = make_bridge(segment_batching=True)
        check_batch_is_queued_as_one_message(bridge)


def check_batch_is_queued_as_one_message(bridge: Bridge) -> None:
    # GIVEN a batched delivery: identify, track, and an anonymous track
    events = [load_event("segment_identify.json"), load_event("segment_track.json"),
              load_event("segment_track_anonymous.json")]
    body = json.dumps(events).encode()
    first = json.dumps(events[0], separators=(",", ":"), ensure_ascii=False).encode()
    request = apigw_event("POST", "/segment", body, {"x-signature": sign_segment(first,
                                                                                SHARED_SECRET)})
    # WHEN it reaches the handler
    status, reply = answer(bridge.ingest.handle(request))
    # THEN two events are accepted, the anonymous one is skipped and counted
    assert status == 200
    assert reply["accepted"] == 2 and reply["skipped"] == {"no_user_id": 1}
    # in one message (one SQS request, one delivery record), in the order sent
    [message] = messages = queued(bridge)
    envelopes = decode_envelopes(message["Body"])
    assert [e.event["type"] for e in envelopes] == ["identify", "track"]
    assert {e.direction for e in envelopes} == {"segment_to_userflow"}
    assert {e.request_id for e in envelopes} == {reply["request_id"]}
    assert {m["MessageAttributes"]["direction"]["StringValue"] for m in messages} == {
        "segment_to_userflow"}


def test_base64_encoded_body_is_decoded_before_verification(bridge: Bridge) -> None:
    status, reply = answer(bridge.ingest.handle(
        segment_request(load_event("segment_identify.json"), base64_encoded=True)))
    assert (status, reply["accepted"]) == (200, 1)


def test_userflow_notification_is_queued(bridge: Bridge) -> None:
    status, reply = answer(bridge.ingest.handle(
        userflow_request(load_event("userflow_event_tracked.json"))))
    assert (status, reply["accepted"]) == (200, 1)
    [message] = queued(bridge)
    envelope = decode_envelope(message["Body"])
    assert envelope.direction == "userflow_to_segment"
    assert envelope.event["id"] == "wn_7fTz1bU0r2"


def test_userflow_echo_of_a_bridged_event_is_dropped(bridge: Bridge) -> None:
    status, reply = answer(bridge.ingest.handle(
        userflow_request(load_event("userflow_event_echo.json"))))
    assert (status, reply["accepted"], reply["skipped"]) == (200, 0, {"echo": 1})
    assert queued(bridge) == []
    assert bridge.runtime.stats.snapshot()["userflow_to_segment"]["skipped"] == {"echo": 1}


@pytest.mark.parametrize(("request_event", "status", "error"), [
    (apigw_event("POST", "/segment", b'{"type":"track"}'), 401, "missing X-Signature"),
    (apigw_event("POST", "/segment", b'{"type":"track"}', {"x-signature": "0" * 40}), 401,
     "does not match"),
    (apigw_event("POST", "/userflow", b"{}", {"userflow-signature": "t=1,v1=" + "0" * 64}),
     401, "matches"),
    (apigw_event("POST", "/nowhere", b"{}"), 404, "no route /nowhere"),
    (apigw_event("GET", "/segment", None), 405, "GET is not allowed on /segment"),
    (apigw_event("POST", "/segment", b"x" * (512 * 1024 + 1)), 413, "limit is 524288"),
    (apigw_event("POST", "/segment", b"%%%", base64_encoded=False) | {"isBase64Encoded": True},
     400, "not valid base64"),
])
def test_bad_requests_get_clear_answers(bridge: Bridge, request_event: dict[str, Any],
                                        status: int, error: str) -> None:
    got_status, reply = answer(bridge.ingest.handle(request_event))
    assert got_status == status
    assert error in reply["error"] and reply["request_id"]


def test_malformed_json_with_a_valid_signature_is_400(bridge: Bridge) -> None:
    for body in (b"{not json", b"[1, 2]", b"NaN", b'"text"'):
        request = apigw_event("POST", "/segment", body,
                              {"x-signature": sign_segment(body, SHARED_SECRET)})
        status, reply = answer(bridge.ingest.handle(request))
        assert status == 400 and reply["error"], body
    assert queued(bridge) == []


def test_wrong_method_lists_the_allowed_one(bridge: Bridge) -> None:
    result = bridge.ingest.handle(apigw_event("DELETE", "/health", None))
    assert result["statusCode"] == 405 and result["headers"]["allow"] == "GET"


def test_health_reports_directions_and_no_secrets(bridge: Bridge) -> None:
    # GIVEN the health fixture, served under a named stage
    status, reply = answer(bridge.ingest.handle(load_event("apigw_v2_health.json")))
    assert status == 200
    assert reply["directions"] == {"segment_to_userflow": True, "userflow_to_segment": True}
    assert reply["version"] and reply["request_id"] == "health-req-1"
    assert SHARED_SECRET not in json.dumps(reply)


def test_unconfigured_direction_answers_503() -> None:
    with mock_aws():
        bridge = make_bridge(configure_segment=False)
        status, reply = answer(bridge.ingest.handle(
            userflow_request(load_event("userflow_event_tracked.json"))))
        assert status == 503 and "USERFLOW_WEBHOOK_SECRET_ARN" in reply["error"]
        _, health = answer(bridge.ingest.handle(load_event("apigw_v2_health.json")))
        assert health["directions"] == {"segment_to_userflow": True,
                                        "userflow_to_segment": False}


def test_rotated_secret_is_refetched_once_then_cached(bridge: Bridge) -> None:
    # GIVEN the cache holds the old secret
    assert answer(bridge.ingest.handle(segment_request(load_event("segment_identify.json"))))[
        0] == 200
    calls_before = bridge.runtime.secrets.fetch_count
    # WHEN the secret is rotated in Secrets Manager and the cache is old enough to recheck
    arn = bridge.runtime.settings.segment_shared_secret_arn
    bridge.runtime.aws.secretsmanager.put_secret_value(SecretId=arn,
                                                       SecretString="new-secret," + SHARED_SECRET)
    bridge.runtime.secrets._min_refresh = 0
    status, _ = answer(bridge.ingest.handle(
        segment_request(load_event("segment_identify.json"), secret="new-secret")))
    # THEN the request signed with the new secret passes after one refetch
    assert status == 200
    assert bridge.runtime.secrets.fetch_count == calls_before + 1


def test_forged_requests_cannot_force_secret_fetches(bridge: Bridge) -> None:
    assert answer(bridge.ingest.handle(segment_request(load_event("segment_identify.json"))))[
        0] == 200
    calls_before = bridge.runtime.secrets.fetch_count
    for _ in range(50):
        status, _ = answer(bridge.ingest.handle(
            segment_request(load_event("segment_identify.json"), secret="forged")))
        assert status == 401
    assert bridge.runtime.secrets.fetch_count == calls_before


def test_queue_failure_is_503_not_200(bridge: Bridge) -> None:
    bridge.sqs.delete_queue(QueueUrl=bridge.runtime.settings.queue_url)
    status, reply = answer(bridge.ingest.handle(segment_request(load_event(
        "segment_identify.json"))))
    assert status == 503 and "queue" in reply["error"]


def test_lambda_entry_point_reads_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                  bridge: Bridge,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    s = bridge.runtime.settings
    for name, value in {"QUEUE_URL": s.queue_url, "BRIDGE_LEDGER_TABLE": s.ledger_table,
                        "SEGMENT_SHARED_SECRET_ARN": s.segment_shared_secret_arn,
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setattr(ingest, "_APP", None)
    monkeypatch.setattr(logs, "_target", None)  # on stdout, wherever an earlier test put them
    status, reply = answer(ingest.handler(segment_request(load_event("segment_track.json")),
                                          None))
    assert (status, reply["accepted"]) == (200, 1)
    # AND one structured log line per request, without the secret
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [request_line] = [line for line in lines if line["message"] == "request"]
    assert request_line["route"] == "/segment" and request_line["status"] == 200
    assert request_line["accepted"] == 1
    assert SHARED_SECRET not in json.dumps(lines)


def test_misconfigured_lambda_answers_500_with_request_id(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETS_TTL_SECONDS", "soon")
    monkeypatch.setattr(ingest, "_APP", None)
    status, reply = answer(ingest.handler(apigw_event("GET", "/health", None), None))
    assert status == 500 and reply["request_id"]
    monkeypatch.setattr(ingest, "_APP", None)


def test_unexpected_error_becomes_500_never_an_exception(bridge: Bridge,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(bridge.ingest, "_enqueue", explode)
    status, reply = answer(bridge.ingest.handle(segment_request(load_event(
        "segment_identify.json"))))
    assert status == 500 and reply == {"error": "internal error",
                                       "request_id": reply["request_id"]}
