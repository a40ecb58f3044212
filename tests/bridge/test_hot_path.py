"""The hot path's shortcuts give exactly what the plain library calls give.

Each shortcut (prebuilt JSON encoder, cached timestamp text, per-origin connection pools,
the last upstream call of a batch on the handler's thread) replaces a slower standard call;
these tests hold them to the standard call's result.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge_code.aws import AwsClients
from bridge_code.delivery import DeliveryApp
from bridge_code.envelope import Envelope, compact_json, encode_envelope
from bridge_code.jsonenc import compact_encoder
from bridge_code.ledger import DELIVERED
from bridge_code.logs import utc_isoformat, utc_timestamp_ms
from bridge_code.mapping import MappingConfig, SegmentToUserflow, ViewMapping, segment_skip
from bridge_code.runtime import BridgeRuntime
from bridge_code.secret_store import SecretStore
from bridge_code.settings import BridgeSettings
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
