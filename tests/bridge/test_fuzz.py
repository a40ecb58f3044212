"""Property-based fuzzing of both routes: bad input never yields a 5xx or an exception.

The strategies include the inputs that once did: digits str.isdigit() accepts and int()
refuses, huge and non-ASCII signature headers, overflowing number literals, oversize
events, lone surrogates, deep nesting.
"""

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
    now_iso,
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
                                "groupId", "messageId", "name", "previousId", "receivedAt",
                                "timestamp"])
segment_like = st.dictionaries(
    segment_keys, json_values | st.sampled_from(
        ["identify", "track", "group", "page", "screen", "alias", "delete", "u1", now_iso(),
         now_iso(-10 * 86400), "2999-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00"]),
    max_size=8)
# Header values that once made the bridge answer 500, and their relatives.
odd_header_values = st.sampled_from([
    "t=\u00b2,v1=00", "t=" + "9" * 5000 + ",v1=00", "t=1,v1=\u00e9", "t=1,v1=" + "\u0661" * 64,
    "t=99999999999999999999,v1=" + "0" * 64, "\u00e9" * 40, "0" * 40, "t=1,v1=" + "0" * 64,
    "=" * 3000, "t=1" + ",v1=" * 500,
]) | st.text(max_size=80)
# Literals valid as JSON text that no upstream can take once parsed, and deep nesting.
hostile_fragments = st.sampled_from([
    "1e400", "-1e400", "1E+999", "NaN", "Infinity", "-Infinity", "9" * 5000, '"\\ud800"',
    '"\\udfff\\ud800"', "[" * 3000 + "]" * 3000, '"' + "x" * 40_000 + '"', "{}",
])
userflow_like = st.fixed_dictionaries({
    "id": json_values, "topic": st.sampled_from(["event.tracked", "user.created", "group.updated",
                                                 "x"]) | json_values,
    "data": st.fixed_dictionaries({"object": json_values | st.dictionaries(
        st.sampled_from(["id", "name", "user_id", "group_id", "attributes", "time"]),
        json_values, max_size=6)})})


@pytest.fixture(scope="module")
def bridges() -> Iterator[tuple[Bridge, Bridge]]:
    """A stack whose destination does not batch (the default) and one whose does."""
    with mock_aws():
        strict = make_bridge()
        yield strict, strict.with_settings(segment_batching=True)


@pytest.fixture(scope="module")
def bridge(bridges: tuple[Bridge, Bridge]) -> Bridge:
    return bridges[0]


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
                               odd_header_values, max_size=3),
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
@given(payload=segment_like | st.lists(segment_like, max_size=4) | json_values,
       batching=st.booleans(), first_only=st.booleans())
def test_signed_segment_payloads_never_5xx(bridges: tuple[Bridge, Bridge], payload: Any,
                                           batching: bool, first_only: bool) -> None:
    body = json.dumps(payload).encode()
    signed = (json_stringify(payload[0]).encode("utf-8", "surrogatepass")
              if first_only and isinstance(payload, list) and payload else body)
    event = apigw_event("POST", "/segment", body,
                        {"x-signature": sign_segment(signed, SHARED_SECRET)})
    # 401: stale, undated or not whole-body signed; 413: over Segment's 32 KB
    assert handle(bridges[batching], event) in {200, 400, 401, 413}


@FUZZ
@given(fragment=hostile_fragments, where=st.sampled_from(["properties", "traits", "context"]),
       batched=st.booleans())
def test_hostile_values_in_signed_events_never_5xx(bridges: tuple[Bridge, Bridge],
                                                   fragment: str, where: str,
                                                   batched: bool) -> None:
    # GIVEN a fresh, signed event carrying a hostile literal (text spliced in, as a sender
    # could write it; json.dumps would refuse or rewrite most of them)
    event = json.dumps({"type": "track", "userId": "u1", "event": "Fuzzed",
                        "messageId": f"fuzz-{fragment[:20]}-{where}-{time.time_ns()}",
                        "receivedAt": now_iso(), where: {}})
    text = event.replace(f'"{where}": {{}}', f'"{where}": {{"v": {fragment}}}')
    body = f"[{text}]".encode() if batched else text.encode()
    request = apigw_event("POST", "/segment", body, {
        "x-signature": sign_segment(text.encode(), SHARED_SECRET)})
    status = handle(bridges[batched], request)
    if fragment in {"1e400", "-1e400", "1E+999", "NaN", "Infinity", "-Infinity"}:
        assert status == 400
    else:
        assert status in {200, 400, 401, 413}


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
    # 401: junk can close the object before its receivedAt (an undated event)
    assert handle(bridge, event) in {200, 400, 401}


@FUZZ
@given(properties=st.lists(st.dictionaries(any_text, json_values, max_size=5), min_size=1,
                           max_size=3))
def test_accepted_events_with_any_values_are_queued(bridges: tuple[Bridge, Bridge],
                                                    properties: list[dict[str, Any]]) -> None:
    # GIVEN fresh, well-formed track events (batched when several) with arbitrary properties
    events = [{"type": "track", "userId": "u1", "event": "Fuzzed", "properties": p,
               "messageId": f"any-{time.time_ns()}-{i}", "receivedAt": now_iso()}
              for i, p in enumerate(properties)]
    payload: Any = events if len(events) > 1 else events[0]
    body = json.dumps(payload).encode()
    first = json_stringify(events[0]).encode("utf-8")
    signature = sign_segment(body if len(events) == 1 else first, SHARED_SECRET)
    event = apigw_event("POST", "/segment", body, {"x-signature": signature})
    # THEN every one of them is accepted into the queue
    result = bridges[len(events) > 1].ingest.handle(event)
    assert result["statusCode"] == 200, result["body"]
    assert json.loads(result["body"])["accepted"] == len(events)
