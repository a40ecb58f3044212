"""The hot path's shortcuts give exactly what the plain library calls give.

Each shortcut (prebuilt JSON encoder, cached timestamp text, per-origin connection pools,
the last upstream call of a batch on the handler's thread) replaces a slower standard call;
these tests hold them to the standard call's result.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import threading
from typing import Any, cast
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge_code import envelope, logs, signatures
from bridge_code.aws import AwsClients
from bridge_code.delivery import DeliveryApp
from bridge_code.envelope import Envelope, compact_json, encode_envelope
from bridge_code.ingest import _lower_case_headers
from bridge_code.jsonenc import compact_encoder
from bridge_code.ledger import DELIVERED
from bridge_code.logs import utc_isoformat, utc_timestamp_ms
from bridge_code.mapping import (
    MappingConfig,
    SegmentToUserflow,
    Skip,
    UserflowToSegment,
    ViewMapping,
    segment_skip,
    userflow_notification_to_segment,
    userflow_skip,
)
from bridge_code.runtime import BridgeRuntime
from bridge_code.secret_store import SecretStore
from bridge_code.settings import BridgeSettings
from bridge_code.signatures import SignatureError, parse_userflow_header
from bridge_code.upstream import Outcome, UpstreamClient
from tests.bridge.helpers import FakeUpstream, MemoryLedger, load_event

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_prebuilt_encoders_write_what_json_writes(value: Any) -> None:
    assert compact_json(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=True)
    assert compact_encoder(ensure_ascii=False)(value) == json.dumps(
        value, separators=(",", ":"), ensure_ascii=False)
    assert compact_encoder(default=str)(value) == json.dumps(
        value, separators=(",", ":"), default=str)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["time", "level", "message", "route"]) | st.text(max_size=4),
                       JSON_VALUES | st.text(min_size=250, max_size=300), max_size=5),
       st.text(max_size=8), st.sampled_from(["INFO", "WARNING"]))
def test_log_lines_write_what_the_whole_record_encodes_to(fields: dict[str, Any], message: str,
                                                          level: str) -> None:
    record = {"time": "T", "level": level, "message": message}
    record.update({k: logs.preview(v) if type(v) is str else v for k, v in fields.items()})
    with mock.patch.object(logs, "utc_timestamp_ms", lambda: "T"):
        assert logs._line(message, level, fields) == json.dumps(
            record, separators=(",", ":"), default=str)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES.map(json.dumps) | st.text(max_size=12).map(lambda t: "{" + t + "}")
       | st.sampled_from(['{"a":1}x}', '{"a":1} ', ' {"a":1}', '{"a":1}}', "{}", "{"]))
def test_envelope_bodies_parse_as_json_loads_parses_them(body: str) -> None:
    def outcome(parse: Any) -> str:
        try:
            return json.dumps(parse(body))  # as text: NaN equals NaN
        except ValueError as error:
            return f"{type(error).__name__}: {error}"

    assert outcome(envelope._parse) == outcome(json.loads)


_DIGEST = "0123456789abcdefABCDEF" * 3
_USERFLOW_HEADERS = st.builds(
    lambda t, sep, digest, tail: f"t={t}{sep}v1={digest}{tail}",
    st.sampled_from(["1700000000", "1" * 12, "1" * 13, "", "x", "\u00b2"]),
    st.sampled_from([",", ", ", ";"]),
    st.sampled_from([_DIGEST[:64], _DIGEST[:63], _DIGEST[:64] + "0", "g" * 64]),
    st.sampled_from(["", ",v1=" + "a" * 64, ",", " "])) | st.text(max_size=80)


@settings(max_examples=400, deadline=None)
@given(_USERFLOW_HEADERS)
def test_the_usual_userflow_header_reads_as_the_general_parse_reads_it(header: str) -> None:
    def outcome(parse: Any) -> Any:
        try:
            return parse(header)
        except SignatureError as error:
            return str(error)

    assert outcome(parse_userflow_header) == outcome(signatures._parse_any_userflow_header)


@settings(max_examples=100, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=10), st.binary(max_size=100),
       st.sampled_from(["sha1", "sha256"]))
def test_hmac_digests_are_the_standard_librarys(secret: str, payload: bytes,
                                               algorithm: str) -> None:
    expected = hmac.digest(secret.encode("utf-8"), payload, algorithm).hex()
    assert signatures._hex_digest(secret, payload, algorithm) == expected


# Upper-case sigma (lower-cased by context), sharp s, dotted capital I (two characters once
# lower-cased), digits only, empty.
_HEADER_NAMES = st.sampled_from(["x-signature", "X-Signature", "content-type",
                                 "\u03a3\u0391\u03a3", "\u03c3", "\u00df", "\u0130",
                                 "x-1", "123", ""]) | st.text(max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_HEADER_NAMES | st.integers(), st.text(max_size=4) | st.integers(),
                       max_size=6))
def test_headers_taken_as_they_are_equal_the_lower_cased_copy(headers: dict[Any, Any]) -> None:
    copy = {str(k).lower(): str(v) for k, v in headers.items()}
    taken = _lower_case_headers(headers)
    assert taken == copy and list(taken) == list(copy)
    assert all(type(k) is str and type(v) is str for k, v in taken.items())


def test_log_encoder_falls_back_to_str_for_odd_values() -> None:
    encode = compact_encoder(default=str)
    value = {"when": dt.date(2024, 2, 29), "kind": ValueError}
    assert encode(value) == json.dumps(value, separators=(",", ":"), default=str)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.floats(min_value=0, max_value=4e9),
                 st.integers(min_value=0, max_value=4_000_000_000).map(float),
                 st.integers(min_value=0, max_value=4_000_000_000).map(lambda s: s + 0.9999996)))
def test_cached_timestamps_equal_datetime_isoformat(now: float) -> None:
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    assert utc_timestamp_ms(now) == moment.isoformat(timespec="milliseconds")
    assert utc_isoformat(now) == moment.isoformat()


def test_encode_envelope_matches_the_envelope_method() -> None:
    event = load_event("segment_track.json")
    raw = json.dumps(event)
    for raw_event in (None, raw, raw.replace("Order", "Order\uffff")):
        direct = encode_envelope("segment_to_userflow", event, "t", "r", raw_event)
        assert direct == Envelope("segment_to_userflow", event, "t", "r").encode(raw_event)
    # A refused character in the raw text means the escaped re-serialization is queued.
    refused = encode_envelope("segment_to_userflow", event, "t", "r", raw + "\ufffe")
    assert "\ufffe" not in refused and json.loads(refused)["event"] == event


_ODD: tuple[Any, ...] = (None, 0, 7, "", " ", "x", [], {})


def _either(*usual: Any) -> st.SearchStrategy[Any]:
    """Mostly a well-formed value, sometimes an odd one, sometimes absent (`...`)."""
    return st.sampled_from([*usual * 12, ..., *_ODD])


@st.composite
def _notifications(draw: st.DrawFn) -> Any:
    def put(target: dict[str, Any], key: str, value: Any) -> None:
        if value is not ...:
            target[key] = value

    attributes: dict[str, Any] = {}
    put(attributes, "bridged_from", draw(_either("segment", "other")))
    obj: dict[str, Any] = {}
    for key, values in (("user_id", ("u1", 7)), ("id", ("u1", 7)), ("name", ("flow_started",)),
                        ("group_id", ("g1",)), ("time", ("2024-01-01",))):
        put(obj, key, draw(_either(*values)))
    put(obj, "attributes", draw(_either(attributes)))
    notification: dict[str, Any] = {}
    put(notification, "id", draw(_either("wn_1", 5)))
    put(notification, "topic", draw(_either("event.tracked", "event.tracked.flow_started",
                                            "event.trackedx", "user.created", "user.updated",
                                            "group.created")))
    put(notification, "data", draw(_either({"object": obj})))
    put(notification, "created_at", draw(_either("2024-01-01T00:00:00Z")))
    return draw(_either(notification))


@settings(max_examples=500, deadline=None)
@given(_notifications(), st.booleans(), st.booleans())
def test_the_ingest_skip_check_decides_as_the_whole_mapping(notification: Any, events: bool,
                                                            users: bool) -> None:
    config = MappingConfig(userflow_to_segment=UserflowToSegment(events=events, users=users))
    mapped = userflow_notification_to_segment(notification, config)
    assert userflow_skip(notification, config) == (mapped if isinstance(mapped, Skip) else None)


def test_enabled_types_follow_the_switches() -> None:
    cfg = SegmentToUserflow(track=False, page=ViewMapping(enabled=True), delete=True)
    assert cfg.enabled_types == {"identify", "group", "page", "delete"}
    config = MappingConfig(segment_to_userflow=cfg)
    track = load_event("segment_track.json")
    skip = segment_skip(track, config)
    assert skip is not None and skip.reason == "disabled"
    assert segment_skip(track, MappingConfig()) is None


def test_one_pool_per_origin_and_the_path_and_query_are_kept() -> None:
    with FakeUpstream() as upstream:
        client = UpstreamClient(5.0, 1, 0.0, 0.0)
        deadline = float("inf")
        for path in ("/users", "/events?x=1&y=%20", "/users/a%2Fb"):
            outcome = client.send("POST", upstream.url + path, {"X-Test": "1"}, b"{}",
                                  deadline)
            assert outcome.ok, outcome.detail
        assert [r.path for r in upstream.received] == ["/users", "/events?x=1&y=%20",
                                                       "/users/a%2Fb"]
        assert all(r.headers.get("X-Test") == "1" for r in upstream.received)
        assert len(client._pools) == 1  # one origin, one pool, reused
        assert upstream.connections == 1  # and one kept-alive connection
        other = upstream.url.replace("127.0.0.1", "localhost")
        assert client.send("POST", other + "/users", {}, b"{}", deadline).ok
        assert len(client._pools) == 2


class _ScriptedUpstream(UpstreamClient):
    """Fails the call to one path with an unexpected exception; records the thread of each."""

    def __init__(self, failing_user: str) -> None:
        super().__init__(1.0, 1, 0.0, 0.0)
        self.failing_user = failing_user
        self.threads: dict[str, str] = {}
        self.lock = threading.Lock()

    def send(self, method: str, url: str, headers: Any, body: bytes | None,
             deadline: float) -> Outcome:
        user = json.loads(body or b"{}").get("id", "")
        with self.lock:
            self.threads[user] = threading.current_thread().name
        if user == self.failing_user:
            raise RuntimeError("unexpected")
        return Outcome(True, False, 200, "HTTP 200", 1)


class _StubAws:
    def secret_string(self, secret_id: str) -> str:
        return "key"


def _delivery(upstream: UpstreamClient) -> DeliveryApp:
    settings = BridgeSettings(queue_url="q", dead_letter_queue_url="dlq",
                              userflow_api_key_arn="uf", userflow_api_url="http://127.0.0.1:9")
    aws = _StubAws()
    runtime = BridgeRuntime(settings, cast(AwsClients, aws),
                            SecretStore(aws.secret_string, 300), MappingConfig(),
                            ledger=MemoryLedger())
    return DeliveryApp(runtime, upstream=upstream)


def _identify_records(users: list[str]) -> dict[str, Any]:
    records = []
    for index, user in enumerate(users):
        event = {"type": "identify", "userId": user, "messageId": f"m-{user}", "traits": {}}
        records.append({"messageId": f"r{index}", "attributes": {"ApproximateReceiveCount": "1"},
                        "body": Envelope("segment_to_userflow", event, "t", "r").encode()})
    return {"Records": records}


def test_last_call_runs_on_the_handler_thread_the_rest_in_the_pool() -> None:
    upstream = _ScriptedUpstream(failing_user="")
    app = _delivery(upstream)
    try:
        assert app.handle(_identify_records(["u1", "u2", "u3"])) == {"batchItemFailures": []}
    finally:
        app.close()
    assert upstream.threads["u3"] == threading.current_thread().name
    assert all(upstream.threads[u].startswith("bridge-delivery") for u in ("u1", "u2"))
    assert app.runtime.stats.snapshot()["segment_to_userflow"]["delivered"] == 3


def test_an_unexpected_error_in_the_last_call_requeues_only_the_unsettled() -> None:
    upstream = _ScriptedUpstream(failing_user="u3")
    app = _delivery(upstream)
    try:
        result = app.handle(_identify_records(["u1", "u2", "u3"]))
    finally:
        app.close()
    # The pooled calls' outcomes are recorded before the error surfaces: only u3 goes back.
    assert result == {"batchItemFailures": [{"itemIdentifier": "r2"}]}
    # AND the ledger says u1 and u2 were delivered (the invocation settled its claims), and
    # gives u3's claim back as uncertain: a later claim takes it over
    ledger = app.runtime.ledger
    assert isinstance(ledger, MemoryLedger)
    assert ledger.items["delivered#m-u3"]["state"] == "uncertain"
    assert {user: ledger.claim(DELIVERED, f"m-{user}", 30, 600, holder="later").state
            for user in ("u1", "u2", "u3")} == {"u1": "done", "u2": "done", "u3": "taken_over"}
