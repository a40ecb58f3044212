"""The local runner: real HTTP in, moto over HTTP for SQS/Secrets Manager, a fake upstream out."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge_code.signatures import sign_segment, sign_userflow
from sandbox.local_bridge import LocalBridge
from tests.bridge.helpers import (
    SHARED_SECRET,
    USERFLOW_KEY,
    WEBHOOK_SECRET,
    WRITE_KEY,
    FakeUpstream,
    Fault,
    load_event,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]


def env_for(upstream: FakeUpstream, **extra: str) -> dict[str, str]:
    return {"USERFLOW_API_URL": upstream.url, "SEGMENT_TRACKING_URL": upstream.url,
            "USERFLOW_API_KEY": USERFLOW_KEY, "SEGMENT_WRITE_KEY": WRITE_KEY,
            "SEGMENT_SHARED_SECRET": f"old-secret,{SHARED_SECRET}",
            "USERFLOW_WEBHOOK_SECRET": WEBHOOK_SECRET, **extra}


def call(url: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    reply = requests.request(method, url, data=body, timeout=10, headers={
        "content-type": "application/json", **(headers or {})})
    return reply.status_code, reply.json()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def test_both_directions_over_http_within_seconds(upstream: FakeUpstream) -> None:
    with LocalBridge(env=env_for(upstream)) as bridge:
        # GIVEN a Segment identify and a Userflow flow_started, both signed
        segment_body = json.dumps(load_event("segment_identify.json")).encode()
        status, reply = call(bridge.url + "/segment", "POST", segment_body,
                             {"x-signature": sign_segment(segment_body, SHARED_SECRET)})
        assert (status, reply["accepted"]) == (200, 1)
        userflow_body = json.dumps(load_event("userflow_event_tracked.json")).encode()
        header = sign_userflow(userflow_body, WEBHOOK_SECRET, int(time.time()))
        status, reply = call(bridge.url + "/userflow", "POST", userflow_body,
                             {"userflow-signature": header})
        assert (status, reply["accepted"]) == (200, 1)
        # THEN both upstreams receive them within seconds
        assert wait_for(lambda: upstream.delivered("/users") != []
                        and upstream.delivered("/v1/batch") != [], timeout=10)
        assert upstream.delivered("/users")[0].body["id"] == "97980cfea0067"
        [message] = upstream.delivered("/v1/batch")[0].body["batch"]
        assert message["event"] == "Flow Started"
        # AND the stats say so per direction
        # (the queue drains just after the handler returns: deletion follows delivery)
        assert wait_for(lambda: call(bridge.url + "/__sandbox__/stats")[1]["queues"] == {
            "queue": 0, "dead_letter_queue": 0})
        _, stats = call(bridge.url + "/__sandbox__/stats")
        for direction in ("segment_to_userflow", "userflow_to_segment"):
            assert stats[direction]["accepted"] == stats[direction]["delivered"] == 1


def test_health_and_unconfigured_direction(upstream: FakeUpstream) -> None:
    env = env_for(upstream)
    del env["SEGMENT_WRITE_KEY"]
    with LocalBridge(env=env) as bridge:
        status, health = call(bridge.url + "/health")
        assert status == 200
        assert health["directions"] == {"segment_to_userflow": True,
                                        "userflow_to_segment": False}
        assert WRITE_KEY not in json.dumps(health) and SHARED_SECRET not in json.dumps(health)
        status, reply = call(bridge.url + "/userflow", "POST", b"{}")
        assert status == 503 and "not configured" in reply["error"]
        assert any("SEGMENT_WRITE_KEY" in note for note in bridge.notes)
        assert call(bridge.url + "/nope")[0] == 404
        assert call(bridge.url + "/health", "POST", b"{}")[0] == 405


def test_replay_route_redrives_dead_letters(upstream: FakeUpstream) -> None:
    # GIVEN Userflow refuses an event once (permanent 4xx)
    upstream.fault(Fault("/events", count=1, status=400))
    with LocalBridge(env=env_for(upstream)) as bridge:
        body = json.dumps(load_event("segment_track.json")).encode()
        status, _ = call(bridge.url + "/segment", "POST", body,
                         {"x-signature": sign_segment(body, SHARED_SECRET)})
        assert status == 200

        def stats() -> dict[str, Any]:
            return dict(call(bridge.url + "/__sandbox__/stats")[1])

        assert wait_for(lambda: stats()["segment_to_userflow"]["dead_lettered"] == 1)
        assert upstream.delivered("/events") == []
        # WHEN the dead letters are replayed
        status, moved = call(bridge.url + "/__sandbox__/replay", "POST", b"{}")
        assert (status, moved) == (200, {"moved": 1, "failed": 0})
        # THEN the event is delivered, once
        assert wait_for(lambda: stats()["segment_to_userflow"]["delivered"] == 1)
        assert len(upstream.delivered("/events")) == 1
        final = stats()["segment_to_userflow"]
        assert final["accepted"] + final["replayed"] == final["delivered"] + final[
            "dead_lettered"]


def test_replay_command_line_against_moto(upstream: FakeUpstream) -> None:
    upstream.fault(Fault("/events", count=1, status=400))
    with LocalBridge(env=env_for(upstream)) as bridge:
        body = json.dumps(load_event("segment_track.json")).encode()
        call(bridge.url + "/segment", "POST", body,
             {"x-signature": sign_segment(body, SHARED_SECRET)})
        assert bridge.runtime is not None
        stats = bridge.runtime.stats
        assert wait_for(lambda: stats.snapshot()["segment_to_userflow"]["dead_lettered"] == 1)
        # WHEN the operator runs the replay command against the same moto
        endpoint = bridge.aws_endpoint_url
        result = subprocess.run(
            [sys.executable, "-m", "bridge_code.replay", "--dlq-url", bridge.dlq_url,
             "--queue-url", bridge.queue_url], cwd=ROOT, capture_output=True, text=True,
            timeout=60, env={**os.environ, "AWS_ENDPOINT_URL": endpoint,
                             "AWS_ACCESS_KEY_ID": "sandbox", "AWS_SECRET_ACCESS_KEY": "sandbox",
                             "AWS_DEFAULT_REGION": "us-east-1"})
        assert result.returncode == 0, result.stderr
        assert "moved 1 message(s)" in result.stdout
        assert wait_for(lambda: len(upstream.delivered("/events")) == 1)


def test_command_prints_one_ready_line_and_stops_on_sigterm(upstream: FakeUpstream) -> None:
    process = subprocess.Popen([sys.executable, "-m", "sandbox", "bridge", "--port", "0"],
                               cwd=ROOT, env={**os.environ, **env_for(upstream)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("READY bridge http://127.0.0.1:"), line
        url = line.split()[-1]
        status, health = call(url + "/health")
        assert status == 200 and health["status"] == "ok"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert process.stdout.read() == ""  # nothing but the READY line on stdout
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_failed_delivery_comes_back_from_sqs_within_seconds(upstream: FakeUpstream) -> None:
    # GIVEN Userflow fails more times than one invocation retries
    upstream.fault(Fault("/users", count=2, status=503))
    with LocalBridge(env=env_for(upstream), visibility_timeout=2,
                     tuning={"max_attempts": 2, "backoff_base_seconds": 0.01,
                             "deadline_margin_seconds": 0.2}) as bridge:
        body = json.dumps(load_event("segment_identify.json")).encode()
        started = time.monotonic()
        status, _ = call(bridge.url + "/segment", "POST", body,
                         {"x-signature": sign_segment(body, SHARED_SECRET)})
        assert status == 200
        # THEN SQS hands it back after the visibility timeout and it is delivered
        assert wait_for(lambda: len(upstream.delivered("/users")) == 1, timeout=15)
        assert time.monotonic() - started < 10
        assert bridge.runtime is not None
        runtime = bridge.runtime
        # Counted once the ledger has recorded the delivery, a moment after Userflow's answer.
        assert wait_for(lambda: runtime.stats.snapshot()["segment_to_userflow"]["delivered"] == 1,
                        timeout=5)
        s = runtime.stats.snapshot()["segment_to_userflow"]
        assert s["requeued"] == 1 and s["delivered"] == 1 and s["dead_lettered"] == 0


def raw_exchange(url: str, request: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are (requests would fix the framing) and read the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(request)
        chunks = []
        while True:
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b'"}' in chunk:
                break
        return b"".join(chunks)


@pytest.mark.parametrize("framing", ["Content-Length: -1\r\n", "Content-Length: abc\r\n", "",
                                     "Content-Length: \u0661\r\n", "Content-Length: 1e3\r\n",
                                     "Transfer-Encoding: chunked\r\n"])
def test_bad_framing_is_answered_400(upstream: FakeUpstream, framing: str) -> None:
    with LocalBridge(env=env_for(upstream)) as bridge:
        started = time.monotonic()
        reply = raw_exchange(bridge.url, (
            f"POST /segment HTTP/1.1\r\nHost: x\r\n{framing}\r\n").encode() + b"{}")
        assert reply.startswith(b"HTTP/1.1 400 "), reply[:200]
        assert b"Content-Length" in reply.split(b"\r\n\r\n", 1)[1]
        assert time.monotonic() - started < 4  # answered, not left hanging


def test_long_path_is_not_echoed(upstream: FakeUpstream,
                                 capfd: pytest.CaptureFixture[str]) -> None:
    with LocalBridge(env=env_for(upstream)) as bridge:
        path = "/" + "p" * 60_000
        reply = requests.get(bridge.url + path, timeout=10)
        assert reply.status_code == 404 and len(reply.text) < 300
    # AND the bridge's log line for it (on stderr) stays short too
    [line] = [line for line in capfd.readouterr().err.splitlines() if '"route"' in line]
    assert json.loads(line)["status"] == 404 and len(line) < 1000


def test_replayed_request_is_one_event_over_http(upstream: FakeUpstream) -> None:
    # GIVEN the local runner, whose ledger is a DynamoDB table in moto's server
    with LocalBridge(env=env_for(upstream)) as bridge:
        body = json.dumps(load_event("segment_track.json")).encode()
        headers = {"x-signature": sign_segment(body, SHARED_SECRET)}
        # WHEN one captured request is sent three times
        replies = [call(bridge.url + "/segment", "POST", body, headers) for _ in range(3)]
        # THEN all are answered 2xx, one event is queued and delivered, two counted replays
        assert [(status, reply["accepted"]) for status, reply in replies] == [
            (200, 1), (200, 0), (200, 0)]
        assert wait_for(lambda: len(upstream.delivered("/events")) == 1)
        assert bridge.runtime is not None
        s = bridge.runtime.stats.snapshot()["segment_to_userflow"]
        assert s["skipped"] == {"replay": 2}
        assert wait_for(lambda: bridge.stats()["queues"]["queue"] == 0)
        assert len(upstream.delivered("/events")) == 1
