"""The local bridge loses nothing it acknowledged when it dies: its queue, ledger and secrets
live in the local AWS service (`python -m sandbox aws`, a process of its own), so a bridge
killed with a backlog (kill -9, or SIGTERM) and started again with the same settings delivers
every acknowledged event exactly once, and still refuses replays of what it accepted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from bridge_code.aws import AwsClients, AwsTarget
from bridge_code.ledger import ACCEPTED, DELIVERED, DynamoLedger
from bridge_code.signatures import sign_segment, sign_userflow
from sandbox.local_bridge import create_ledger_table, hand_over_delivery_claims
from tests.bridge.helpers import (
    MOTO_TARGET,
    WEBHOOK_SECRET,
    FakeUpstream,
    Fault,
    load_event,
    wait_for,
)
from tests.bridge.test_local_bridge import call, env_for

ROOT = Path(__file__).resolve().parents[2]
SEGMENT_EVENTS = 20
USERFLOW_EVENTS = 10
LOCAL_NAME = "durable"


def start(command: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[str], str]:
    """`python -m sandbox <command>` with its log in a file; its URL from the READY line."""
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", command, "--port", "0"], cwd=ROOT,
            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith(f"READY {command} http://"), (line, log.read_text()[-2000:])
    return process, line.split()[-1]


def end(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def local_aws(tmp_path: Path) -> Iterator[str]:
    process, url = start("aws", {}, tmp_path / "aws.log")
    try:
        yield url
    finally:
        end(process)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def sqs(aws_url: str) -> Any:
    return AwsClients(AwsTarget(endpoint_url=aws_url, region="us-east-1",
                                access_key_id="sandbox", secret_access_key="sandbox")).sqs


def depth(aws_url: str, queue: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue of the local AWS service."""
    client = sqs(aws_url)
    url = client.get_queue_url(QueueName=queue)["QueueUrl"]
    a = client.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def segment_body(i: int) -> bytes:
    event = load_event("segment_track.json")
    event.update(messageId=f"crash-{i}", userId=f"user-{i}")
    return json.dumps(event).encode()


def userflow_body(i: int) -> bytes:
    event = load_event("userflow_event_tracked.json")
    event["id"] = f"wn_crash_{i}"
    event["data"]["object"]["user_id"] = f"user-{i}"
    return json.dumps(event).encode()


def send_backlog(url: str) -> int:
    """Both directions' events, each acknowledged (2xx, accepted); how many."""
    acknowledged = 0
    for i in range(SEGMENT_EVENTS):
        body = segment_body(i)
        status, reply = call(url + "/segment", "POST", body,
                             {"x-signature": sign_segment(body, "seg-shared-secret-1")})
        assert (status, reply["accepted"]) == (200, 1), reply
        acknowledged += 1
    for i in range(USERFLOW_EVENTS):
        body = userflow_body(i)
        header = sign_userflow(body, WEBHOOK_SECRET, int(time.time()))
        status, reply = call(url + "/userflow", "POST", body, {"userflow-signature": header})
        assert (status, reply["accepted"]) == (200, 1), reply
        acknowledged += 1
    return acknowledged


def tally(upstream: FakeUpstream, aws_url: str) -> tuple[Counter[str], Counter[str], int]:
    """Userflow events and Segment messageIds delivered (with repeats), and letters parked."""
    userflow = Counter(str(r.body["user_id"]) for r in upstream.delivered("/events"))
    segment = Counter(str(m["messageId"]) for r in upstream.delivered("/v1/batch")
                      for m in r.body["batch"])
    visible, in_flight = depth(aws_url, f"{LOCAL_NAME}-dlq")
    return userflow, segment, visible + in_flight


def crash_and_restart(upstream: FakeUpstream, aws_url: str, tmp_path: Path,
                      stop: Callable[[subprocess.Popen[str]], None], scenario: str) -> None:
    env = {**env_for(upstream), "BRIDGE_AWS_ENDPOINT_URL": aws_url,
           "BRIDGE_LOCAL_NAME": LOCAL_NAME}
    # GIVEN a bridge whose upstreams answer 503 to everything, with a backlog it acknowledged
    upstream.fault(Fault("/", count=10**6, status=503))
    first, url = start("bridge", env, tmp_path / "first.log")
    try:
        acknowledged = send_backlog(url)
        assert wait_for(lambda: len(upstream.received) >= 5, timeout=20)
        # WHEN it is stopped mid-delivery
        stop(first)
    finally:
        end(first)
    assert upstream.delivered("/") == []
    # AND started again with the same settings once the upstreams are healthy
    with upstream.lock:
        upstream.faults.clear()
    second, url = start("bridge", env, tmp_path / "second.log")
    try:
        def settled() -> bool:
            userflow, segment, parked = tally(upstream, aws_url)
            return len(userflow) + len(segment) + parked >= acknowledged

        assert wait_for(settled, timeout=90, interval=0.5), tally(upstream, aws_url)
        time.sleep(1.0)  # a repeat would show up now
        # THEN every acknowledged event is delivered exactly once: none lost, none twice
        userflow, segment, parked = tally(upstream, aws_url)
        delivered = len(userflow) + len(segment)
        print(f"\n{scenario}: acknowledged {acknowledged}, delivered {delivered}, "
              f"parked {parked}, lost {acknowledged - delivered - parked}, duplicated "
              f"{sum(userflow.values()) + sum(segment.values()) - delivered}")
        assert userflow == Counter({f"user-{i}": 1 for i in range(SEGMENT_EVENTS)})
        assert segment == Counter({f"userflow-wn_crash_{i}": 1 for i in range(USERFLOW_EVENTS)})
        assert parked == 0
        assert wait_for(lambda: depth(aws_url, LOCAL_NAME) == (0, 0))
        # AND the ledger survived too: a captured request sent again is refused as a replay
        body = segment_body(0)
        status, reply = call(url + "/segment", "POST", body,
                             {"x-signature": sign_segment(body, "seg-shared-secret-1")})
        assert (status, reply["accepted"]) == (200, 0)
        time.sleep(1.0)
        assert tally(upstream, aws_url)[0]["user-0"] == 1
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
        end(second)


def test_kill_9_with_a_backlog_loses_nothing(upstream: FakeUpstream, local_aws: str,
                                             tmp_path: Path) -> None:
    def kill(process: subprocess.Popen[str]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    crash_and_restart(upstream, local_aws, tmp_path, kill, "kill -9")


def test_sigterm_hands_back_in_flight_work(upstream: FakeUpstream, local_aws: str,
                                           tmp_path: Path) -> None:
    def terminate(process: subprocess.Popen[str]) -> None:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        # what it held when told to stop is visible again at once, for the next bridge
        assert depth(local_aws, LOCAL_NAME)[1] == 0

    crash_and_restart(upstream, local_aws, tmp_path, terminate, "SIGTERM")


def test_a_restarted_bridge_takes_over_only_pending_delivery_claims() -> None:
    with mock_aws():
        dynamodb = AwsClients(MOTO_TARGET).dynamodb
        table = create_ledger_table(dynamodb, "ledger")
        assert create_ledger_table(dynamodb, "ledger") == table  # found again, not an error
        ledger = DynamoLedger(lambda: dynamodb, table)
        # GIVEN what a killed bridge leaves: a delivery mid-call, one done, an ingest claim
        ledger.claim(DELIVERED, "mid-call", 600, 3600)
        ledger.complete(ledger.claim(DELIVERED, "done", 600, 3600), 3600)
        ledger.claim(ACCEPTED, "accepting", 600, 3600)
        assert ledger.claim(DELIVERED, "mid-call", 600, 3600).state == "busy"
        # WHEN the next bridge starts
        assert hand_over_delivery_claims(dynamodb, table) == 1
        # THEN the delivery mid-call is taken over at once (its outcome unknown), the
        # delivered one stays delivered, the ingest claim keeps its hold
        assert ledger.claim(DELIVERED, "mid-call", 600, 3600).state == "taken_over"
        assert ledger.claim(DELIVERED, "done", 600, 3600).state == "done"
        assert ledger.claim(ACCEPTED, "accepting", 600, 3600).state == "busy"
