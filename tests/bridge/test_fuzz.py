"""Property-based fuzzing of both routes: bad input never yields a 5xx or an exception."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from bridge_code.signatures import json_stringify, sign_segment, sign_userflow
from tests.bridge.helpers import (
    SHARED_SECRET,
    WEBHOOK_SECRET,
    Bridge,
    apigw_event,
    load_event,
    make_bridge,
)

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# Every code point, lone surrogates included: valid in JSON text when escaped, and once a
# cause of UnicodeEncodeError on the way into SQS.
any_text = st.text(st.characters(exclude_categories=[]), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | any_text,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(any_text, children, max_size=5),
    max_leaves=20,
)
segment_keys = st.sampled_from(["type", "userId", "event", "traits", "properties", "context",
                                "groupId", "messageId", "name", "previousId"])
segment_like = st.dictionaries(
    segment_keys, json_values | st.sampled_from(
        ["identify", "track", "group", "page", "screen", "alias", "delete", "u1"]), max_size=6)
userflow_like = st.fixed_dictionaries({
    "id": json_values, "topic": st.sampled_from(["event.tracked", "user.created", "group.updated",
                                                 "x"]) | json_values,
    "data": st.fixed_dictionaries({"object": json_values | st.dictionaries(
        st.sampled_from(["id", "name", "user_id", "group_id", "attributes", "time"]),
        json_values, max_size=6)})})


@pytest.fixture(scope="module")
def bridge() -> Iterator[Bridge]:
    with mock_aws():
        yield make_bridge()


def handle(bridge: Bridge, event: dict[str, Any]) -> int:
    result = bridge.ingest.handle(event)
    assert set(json.loads(result["body"])) >= {"request_id"}
    return int(result["statusCode"])


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "get", ""]),
       path=st.sampled_from(["/segment", "/userflow", "/health", "/", "/segment/", "/x"])
       | st.text(max_size=30),
       headers=st.dictionaries(st.sampled_from(["x-signature", "userflow-signature",
                                                "content-type"]) | st.text(max_size=10),
                               st.text(max_size=80), max_size=3),
       body=st.binary(max_size=300), encoded=st.booleans())
def test_arbitrary_requests_never_5xx(bridge: Bridge, method: str, path: str,
                                      headers: dict[str, str], body: bytes,
                                      encoded: bool) -> None:
    event = apigw_event(method, path, None, headers)
    event["body"] = (base64.b64encode(body).decode() if encoded
                     else body.decode("utf-8", "replace"))
    event["isBase64Encoded"] = encoded
    assert handle(bridge, event) < 500


@FUZZ
@given(payload=segment_like | st.lists(segment_like, max_size=4) | json_values)
def test_signed_segment_payloads_never_5xx(bridge: Bridge, payload: Any) -> None:
    body = json.dumps(payload).encode()
    event = apigw_event("POST", "/segment", body,
                        {"x-signature": sign_segment(body, SHARED_SECRET)})
    assert handle(bridge, event) in {200, 400}


@FUZZ
@given(payload=userflow_like | json_values, skew=st.integers(-400, 400))
def test_signed_userflow_payloads_never_5xx(bridge: Bridge, payload: Any, skew: int) -> None:
    body = json.dumps(payload).encode()
    header = sign_userflow(body, WEBHOOK_SECRET, int(time.time()) + skew)
    event = apigw_event("POST", "/userflow", body, {"userflow-signature": header})
    status = handle(bridge, event)
    assert status in ({200, 400} if abs(skew) < 290 else {200, 400, 401})


@FUZZ
@given(cut=st.integers(0, 400), junk=st.binary(max_size=5))
def test_truncated_or_corrupted_genuine_bodies_never_5xx(bridge: Bridge, cut: int,
                                                         junk: bytes) -> None:
    body = json.dumps(load_event("segment_identify.json")).encode()[:cut] + junk
    event = apigw_event("POST", "/segment", None,
                        {"x-signature": sign_segment(body, SHARED_SECRET)})
    event["body"] = base64.b64encode(body).decode()
    event["isBase64Encoded"] = True
    assert handle(bridge, event) in {200, 400}


@FUZZ
@given(properties=st.lists(st.dictionaries(any_text, json_values, max_size=5), min_size=1,
                           max_size=3))
def test_accepted_events_with_any_values_are_queued(bridge: Bridge,
                                                    properties: list[dict[str, Any]]) -> None:
    # GIVEN well-formed track events (batched when several) whose properties are arbitrary
    events = [{"type": "track", "userId": "u1", "event": "Fuzzed", "properties": p}
              for p in properties]
    payload: Any = events if len(events) > 1 else events[0]
    body = json.dumps(payload).encode()
    first = json_stringify(events[0]).encode("utf-8")
    signature = sign_segment(body if len(events) == 1 else first, SHARED_SECRET)
    event = apigw_event("POST", "/segment", body, {"x-signature": signature})
    # THEN every one of them is accepted into the queue
    result = bridge.ingest.handle(event)
    assert result["statusCode"] == 200, result["body"]
    assert json.loads(result["body"])["accepted"] == len(events)
