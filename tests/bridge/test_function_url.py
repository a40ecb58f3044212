"""Ingest behind its own function URL (userflowIngress: functionUrl): real function-URL-shaped
events (payload 2.0, routeKey $default, the URL's own host) in, answers and SQS (moto) out.

Any path reaches a function URL, so the bridge serves only Userflow's route and health there;
Segment's route, and everything else, is a 404, so Segment's deliveries stay behind the API's
throttle. The same requests through API Gateway are served as before.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from bridge_code.envelope import decode_envelope
from bridge_code.ingest import arrived_via_function_url, parse_request
from bridge_code.signatures import sign_segment, sign_userflow
from tests.bridge.helpers import (
    SHARED_SECRET,
    WEBHOOK_SECRET,
    Bridge,
    answer,
    apigw_event,
    function_url_event,
    load_event,
    make_bridge,
)


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    with mock_aws():
        yield make_bridge()


def queued(bridge: Bridge) -> list[dict[str, Any]]:
    reply = bridge.sqs.receive_message(QueueUrl=bridge.runtime.settings.queue_url,
                                       MaxNumberOfMessages=10, VisibilityTimeout=30)
    return list(reply.get("Messages", []))


def signed_userflow(payload: Any) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"userflow-signature": sign_userflow(body, WEBHOOK_SECRET, int(time.time()))}


def signed_segment(payload: Any) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"x-signature": sign_segment(body, SHARED_SECRET)}


def test_the_fixture_is_shaped_like_a_function_url_event() -> None:
    # The shape AWS documents for function URLs: payload 2.0 with API Gateway's sentinel
    # values, lower-cased headers, and the URL's own host as the domain.
    event = load_event("function_url_request.json")
    assert (event["version"], event["routeKey"]) == ("2.0", "$default")
    assert event["requestContext"]["routeKey"] == event["requestContext"]["stage"] == "$default"
    assert all(name == name.lower() for name in event["headers"])
    domain = event["requestContext"]["domainName"]
    assert domain == event["headers"]["host"] and ".lambda-url." in domain
    assert isinstance(event["body"], str) and event["isBase64Encoded"] is False
    assert arrived_via_function_url(event["requestContext"])


def test_a_signed_userflow_webhook_through_the_function_url_is_queued(bridge: Bridge) -> None:
    body, headers = signed_userflow(load_event("userflow_event_tracked.json"))
    status, reply = answer(bridge.ingest.handle(
        function_url_event("POST", "/userflow", body, headers)))
    assert (status, reply["accepted"]) == (200, 1)
    assert reply["request_id"] == "6f0c9d2e-1b7a-4c3d-9e8f-0a1b2c3d4e5f"
    [message] = queued(bridge)
    envelope = decode_envelope(message["Body"])
    assert envelope.direction == "userflow_to_segment"
    assert envelope.event["id"] == "wn_7fTz1bU0r2"


def test_a_base64_body_through_the_function_url_is_decoded_before_verification(
    bridge: Bridge,
) -> None:
    body, headers = signed_userflow(load_event("userflow_event_tracked.json"))
    status, reply = answer(bridge.ingest.handle(
        function_url_event("POST", "/userflow", body, headers, base64_encoded=True)))
    assert (status, reply["accepted"]) == (200, 1)


def test_a_forged_userflow_webhook_through_the_function_url_is_401(bridge: Bridge) -> None:
    # No authorizer on the URL: the signature check is the bridge's, as behind the API.
    body = json.dumps(load_event("userflow_event_tracked.json")).encode()
    headers = {"userflow-signature": f"t={int(time.time())},v1={'0' * 64}"}
    status, _ = answer(bridge.ingest.handle(function_url_event("POST", "/userflow", body,
                                                               headers)))
    assert status == 401
    assert queued(bridge) == []


def test_a_signed_segment_delivery_is_404_through_the_function_url_only(
    bridge: Bridge,
) -> None:
    # GIVEN one correctly signed Segment delivery
    body, headers = signed_segment(load_event("segment_identify.json"))
    # WHEN it arrives through the function URL THEN it is not served, and nothing is queued
    status, reply = answer(bridge.ingest.handle(
        function_url_event("POST", "/segment", body, headers)))
    assert (status, reply["error"]) == (404, "no route /segment")
    assert queued(bridge) == []
    # AND the very same delivery through API Gateway is accepted: the door made the 404
    status, reply = answer(bridge.ingest.handle(apigw_event("POST", "/segment", body, headers)))
    assert (status, reply["accepted"]) == (200, 1)


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/"), ("GET", "/"), ("POST", "/nowhere"), ("POST", "/userflow/"),
    ("POST", "/Segment"), ("POST", "/__sandbox__/stats"), ("GET", "/segment"),
])
def test_any_other_path_through_the_function_url_is_404(bridge: Bridge, method: str,
                                                         path: str) -> None:
    status, reply = answer(bridge.ingest.handle(function_url_event(method, path, b"{}")))
    assert status == 404 and reply["error"].startswith("no route ")


def test_health_is_served_through_the_function_url(bridge: Bridge) -> None:
    status, reply = answer(bridge.ingest.handle(function_url_event("GET", "/health", None)))
    assert status == 200
    assert reply["directions"] == {"segment_to_userflow": True, "userflow_to_segment": True}


def test_a_wrong_method_on_a_served_path_is_405_through_the_function_url(
    bridge: Bridge,
) -> None:
    result = bridge.ingest.handle(function_url_event("GET", "/userflow", None))
    assert result["statusCode"] == 405 and result["headers"]["allow"] == "POST"


@pytest.mark.parametrize(("domain", "via_url"), [
    ("a3ktu2lbu6yyl4m2cjfw4ppn5e0dmuqz.lambda-url.eu-central-1.on.aws", True),
    ("A3KTU2LBU6YYL4M2.LAMBDA-URL.us-east-1.on.aws", True),
    ("abc123.execute-api.eu-west-1.amazonaws.com", False),  # API Gateway
    ("hooks.example.com", False),  # an API Gateway custom domain
    ("lambda-url.example.com", False),
    ("", False),
    (None, False),
    (42, False),
])
def test_only_the_function_urls_own_host_marks_an_event(domain: object, via_url: bool) -> None:
    assert arrived_via_function_url({"domainName": domain}) is via_url
    event = function_url_event("POST", "/userflow", b"{}")
    event["requestContext"]["domainName"] = domain
    assert parse_request(event).via_function_url is via_url
