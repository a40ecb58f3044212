"""One bad event does not sink its batch: a Segment batch answered 5xx after its retries is
split until the failing event stands alone; only it is parked, its batch-mates delivered."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from moto import mock_aws

from tests.bridge.helpers import answer, load_event, make_bridge, userflow_request

POISON = "userflow-wn_poison"


class PoisonedSegment:
    """Segment's /v1/batch answering 500 to every batch holding a messageId in `poisoned`
    (or to every batch when `down`), 200 otherwise; records each batch's messageIds."""

    def __init__(self, poisoned: set[str], down: bool = False) -> None:
        self.poisoned, self.down = poisoned, down
        self.calls: list[tuple[int, list[str]]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                ids = [m["messageId"] for m in json.loads(raw)["batch"]]
                status = 500 if fake.down or fake.poisoned & set(ids) else 200
                with fake.lock:
                    fake.calls.append((status, ids))
                payload = b'{"success":true}' if status == 200 else b'{"error":"internal"}'
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def delivered(self) -> Counter[str]:
        with self.lock:
            return Counter(i for status, ids in self.calls if status == 200 for i in ids)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def notification(name: str) -> dict[str, Any]:
    event: dict[str, Any] = load_event("userflow_event_tracked.json")
    event["id"] = f"wn_{name}"
    event["data"]["object"]["user_id"] = f"user-{name}"
    return event


def reason(letter: dict[str, Any]) -> str:
    return str(letter["MessageAttributes"]["dead_letter_reason"]["StringValue"])


@pytest.mark.parametrize("mates", [3, 9])
def test_a_poisoned_event_is_parked_alone(aws: None, mates: int) -> None:
    # GIVEN Segment answers 500 to any batch holding one poisoned event
    segment = PoisonedSegment({POISON})
    try:
        bridge = make_bridge(segment.url)
        names = [str(i) for i in range(mates // 2)] + ["poison"] + [
            str(i) for i in range(mates // 2, mates)]
        for name in names:
            status, _ = answer(bridge.ingest.handle(userflow_request(notification(name))))
            assert status == 200
        # WHEN the queue is delivered (SQS hands the failing message back until it is parked)
        bridge.pump()
        # THEN every batch-mate reached Segment once, and only the poisoned event is parked
        assert segment.delivered() == Counter({f"userflow-wn_{i}": 1 for i in range(mates)})
        [letter] = bridge.dead_letters()
        assert json.loads(letter["Body"])["event"]["id"] == "wn_poison"
        assert reason(letter) == "retries_exhausted"
        s = bridge.runtime.stats.snapshot()["userflow_to_segment"]
        assert (s["delivered"], s["dead_lettered"]) == (mates, 1)
        # AND the calls stay bounded: per delivery of a batch, its attempts plus the halves
        assert len(segment.calls) <= 3 * (2 * (mates + 1))
    finally:
        segment.close()


def test_an_outage_is_not_bisected_into_single_calls(aws: None) -> None:
    # GIVEN Segment answers 500 to everything
    segment = PoisonedSegment(set(), down=True)
    try:
        bridge = make_bridge(segment.url, max_attempts=1)
        for i in range(8):
            answer(bridge.ingest.handle(userflow_request(notification(str(i)))))
        # WHEN one delivery of the batch is made
        from sandbox.local_bridge import deliver_once

        settings = bridge.runtime.settings
        assert settings.queue_url is not None
        deliver_once(bridge.sqs, settings.queue_url, "arn:aws:sqs:us-east-1:1:q",
                     bridge.delivery, wait_seconds=0)
        # THEN the batch and its two halves were tried, no more: nothing singled out
        assert [len(ids) for _, ids in segment.calls] == [8, 4, 4]
        assert bridge.dead_letters() == []
    finally:
        segment.close()
