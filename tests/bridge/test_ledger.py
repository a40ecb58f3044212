"""The ledger's states against moto's DynamoDB, and the test double held to the same rules."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from moto import mock_aws

from bridge_code.aws import AwsClients
from bridge_code.ledger import DELIVERED, DynamoLedger, Ledger, LedgerUnavailable
from bridge_code.settings import BridgeSettings, SettingsError
from sandbox.local_bridge import create_ledger_table
from tests.bridge.helpers import MOTO_TARGET, MemoryLedger


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


LedgerFactory = Callable[[Clock], Ledger]


def _dynamo(clock: Clock) -> Ledger:
    aws = AwsClients(MOTO_TARGET)
    table = create_ledger_table(aws.dynamodb, "ledger-test")
    return DynamoLedger(lambda: aws.dynamodb, table, clock)


@pytest.fixture(params=["dynamodb", "memory"])
def make(request: pytest.FixtureRequest) -> Iterator[LedgerFactory]:
    with mock_aws():
        yield _dynamo if request.param == "dynamodb" else MemoryLedger


def test_claim_then_complete_then_done(make: LedgerFactory) -> None:
    clock = Clock()
    ledger = make(clock)
    first = ledger.claim(DELIVERED, "m-1", hold_seconds=30, keep_seconds=600)
    assert first.state == "claimed"
    assert ledger.claim(DELIVERED, "m-1", 30, 600).state == "busy"
    ledger.complete(first, keep_seconds=600)
    assert ledger.claim(DELIVERED, "m-1", 30, 600).state == "done"
    # a different key or kind is independent
    assert ledger.claim(DELIVERED, "m-2", 30, 600).state == "claimed"
    assert ledger.claim("accepted", "m-1", 30, 600).state == "claimed"


def test_released_claim_is_claimed_afresh(make: LedgerFactory) -> None:
    ledger = make(Clock())
    claim = ledger.claim(DELIVERED, "m-1", 30, 600)
    ledger.release(claim)
    assert ledger.claim(DELIVERED, "m-1", 30, 600).state == "claimed"


def test_uncertain_release_and_lapsed_hold_are_taken_over(make: LedgerFactory) -> None:
    clock = Clock()
    ledger = make(clock)
    ledger.release(ledger.claim(DELIVERED, "m-1", 30, 600), uncertain=True)
    assert ledger.claim(DELIVERED, "m-1", 30, 600).state == "taken_over"
    # a holder that vanished: busy while held, taken over once the hold has passed
    ledger.claim(DELIVERED, "m-2", 30, 600)
    clock.now += 10
    assert ledger.claim(DELIVERED, "m-2", 30, 600).state == "busy"
    clock.now += 30
    assert ledger.claim(DELIVERED, "m-2", 30, 600).state == "taken_over"


def test_release_by_a_former_holder_changes_nothing(make: LedgerFactory) -> None:
    clock = Clock()
    ledger = make(clock)
    stale = ledger.claim(DELIVERED, "m-1", 5, 600)
    clock.now += 10
    current = ledger.claim(DELIVERED, "m-1", 30, 600)
    ledger.release(stale)
    assert ledger.claim(DELIVERED, "m-1", 30, 600).state == "busy"
    ledger.complete(current, 600)
    ledger.release(current)  # completed: no longer pending, so nothing to release
    assert ledger.claim(DELIVERED, "m-1", 30, 600).state == "done"


def test_expired_items_count_as_absent_before_dynamodb_deletes_them(
        make: LedgerFactory) -> None:
    clock = Clock()
    ledger = make(clock)
    ledger.complete(ledger.claim(DELIVERED, "m-1", 30, 600), keep_seconds=600)
    clock.now += 602  # kept at least keep_seconds (rounded up to the next second)
    assert ledger.claim(DELIVERED, "m-1", 30, 600).state == "claimed"


def test_missing_table_is_ledger_unavailable_without_details() -> None:
    with mock_aws():
        aws = AwsClients(MOTO_TARGET)
        ledger = DynamoLedger(lambda: aws.dynamodb, "no-such-table")
        with pytest.raises(LedgerUnavailable, match=r"^ledger write failed \(\w+\)$"):
            ledger.claim(DELIVERED, "m-1", 30, 600)


@pytest.mark.parametrize(("env", "expected"), [
    ({}, (None, False, 86400.0)),
    ({"BRIDGE_LEDGER_TABLE": " t ", "BRIDGE_SEGMENT_BATCHING": "TRUE",
      "BRIDGE_ACCEPTANCE_WINDOW_SECONDS": "3600"}, ("t", True, 3600.0)),
    ({"BRIDGE_SEGMENT_BATCHING": "false"}, (None, False, 86400.0)),
])
def test_trust_settings_from_the_environment(env: dict[str, str],
                                             expected: tuple[object, ...]) -> None:
    s = BridgeSettings.from_env(env)
    assert (s.ledger_table, s.segment_batching, s.acceptance_window_seconds) == expected


@pytest.mark.parametrize(("env", "message"), [
    ({"BRIDGE_SEGMENT_BATCHING": "yes"}, "true or false"),
    ({"BRIDGE_ACCEPTANCE_WINDOW_SECONDS": "a day"}, "number of seconds"),
    ({"BRIDGE_ACCEPTANCE_WINDOW_SECONDS": "0"}, "positive"),
    ({"BRIDGE_ACCEPTANCE_WINDOW_SECONDS": "nan"}, "finite"),
    ({"SECRETS_TTL_SECONDS": "inf"}, "finite"),
])
def test_bad_trust_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        BridgeSettings.from_env(env)


# --- a holder settles its claims in one write ---------------------------------------------------

def test_claims_of_a_settled_holder_are_done_while_held_and_after(make: LedgerFactory) -> None:
    clock = Clock()
    ledger = make(clock)
    assert ledger.claim(DELIVERED, "m-1", 30, 600, holder="h-1").state == "claimed"
    assert ledger.claim(DELIVERED, "m-2", 30, 600, holder="h-1").state == "claimed"
    # before the holder settles, its claims are simply held
    assert ledger.claim(DELIVERED, "m-1", 30, 600, holder="h-2").state == "busy"
    ledger.settle("h-1", keep_seconds=600)
    assert ledger.claim(DELIVERED, "m-1", 30, 600, holder="h-3").state == "done"
    clock.now += 60  # the hold has passed: the claim is overwritten, and found done
    assert ledger.claim(DELIVERED, "m-2", 30, 600, holder="h-4").state == "done"
    clock.now += 60  # and it stays done, though h-4 never settles
    assert ledger.claim(DELIVERED, "m-2", 30, 600, holder="h-5").state == "done"


def test_an_unsettled_holders_claims_are_taken_over_after_the_hold(make: LedgerFactory) -> None:
    clock = Clock()
    ledger = make(clock)
    ledger.claim(DELIVERED, "m-1", 30, 600, holder="crashed")
    ledger.settle("another", 600)
    clock.now += 40
    assert ledger.claim(DELIVERED, "m-1", 30, 600, holder="h-2").state == "taken_over"


def test_settling_does_not_cover_released_or_uncertain_claims(make: LedgerFactory) -> None:
    ledger = make(Clock())
    ledger.release(ledger.claim(DELIVERED, "failed", 30, 600, holder="h-1"))
    ledger.release(ledger.claim(DELIVERED, "unknown", 30, 600, holder="h-1"), uncertain=True)
    ledger.settle("h-1", 600)
    assert ledger.claim(DELIVERED, "failed", 30, 600, holder="h-2").state == "claimed"
    assert ledger.claim(DELIVERED, "unknown", 30, 600, holder="h-2").state == "taken_over"


def test_an_expired_settlement_settles_nothing(make: LedgerFactory) -> None:
    clock = Clock()
    ledger = make(clock)
    ledger.claim(DELIVERED, "m-1", 30, 6000, holder="h-1")
    ledger.settle("h-1", keep_seconds=60)
    clock.now += 120
    assert ledger.claim(DELIVERED, "m-1", 30, 600, holder="h-2").state == "taken_over"


def test_claims_without_a_holder_never_look_for_a_settlement(make: LedgerFactory) -> None:
    # Ingest's claims complete one by one; its role may not read settlements at all.
    clock = Clock()
    ledger = make(clock)
    ledger.claim("accepted", "m-1", 30, 600)
    assert ledger.claim("accepted", "m-1", 30, 600).state == "busy"
    clock.now += 40
    assert ledger.claim("accepted", "m-1", 30, 600).state == "taken_over"


class ThrottlingDynamoDB(BaseHTTPRequestHandler):
    """A DynamoDB endpoint whose table is always over its provisioned capacity: every call is
    refused as DynamoDB refuses it, and counted."""

    calls: ClassVar[list[str]] = []

    def do_POST(self) -> None:  # the HTTP method name
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls.append(self.headers["X-Amz-Target"].rsplit(".", 1)[1])
        body = json.dumps({
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was "
                       "exceeded."}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_throttled_table_is_retried_by_botocore_then_ledger_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the bridge's own DynamoDB client (bridge_code/aws.py) against a table that throttles
    # (botocore's jittered waits between attempts, up to 1 + 2 + 4 s, are not what is tested)
    from botocore.retries.standard import ExponentialBackoff  # type: ignore[import-untyped]

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), ThrottlingDynamoDB)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        target = replace(MOTO_TARGET, endpoint_url=f"http://127.0.0.1:{server.server_port}")
        aws = AwsClients(target)
        ledger = DynamoLedger(lambda: aws.dynamodb, "ledger-test")
        ThrottlingDynamoDB.calls = []
        # WHEN a claim is written THEN botocore's standard mode retries the throttled call
        # (max_attempts=3 retries: 4 calls) and the ledger reports itself unavailable, naming
        # the error type only: the callers answer 503 (ingest) or leave the message to SQS.
        throttled = r"^ledger write failed \(ProvisionedThroughputExceededException\)$"
        with pytest.raises(LedgerUnavailable, match=throttled):
            ledger.claim(DELIVERED, "m-1", 30, 600)
        assert ThrottlingDynamoDB.calls == ["PutItem"] * 4
    finally:
        server.shutdown()
        server.server_close()
