"""The local runner under load: concurrent clients and Segment's largest batches.

Functional, not timing, tests: the bounds are generous; the figures are the bench's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bridge_code.signatures import sign_segment
from sandbox.local_bridge import LocalBridge
from tests.bridge.helpers import SHARED_SECRET, FakeUpstream, load_event, wait_for
from tests.bridge.test_local_bridge import env_for

CLIENTS = 64


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def identify(i: int) -> dict[str, Any]:
    event: dict[str, Any] = load_event("segment_identify.json")
    event.update(messageId=f"load-{i}", userId=f"user-{i}")
    return event


def test_64_concurrent_clients_are_all_answered(upstream: FakeUpstream) -> None:
    with LocalBridge(env=env_for(upstream)) as bridge:
        # GIVEN 64 clients, each with its own connection, released at the same moment
        start = threading.Barrier(CLIENTS)
        outcomes: list[object] = [None] * CLIENTS

        def client(i: int) -> None:
            body = json.dumps(identify(i)).encode()
            headers = {"content-type": "application/json",
                       "x-signature": sign_segment(body, SHARED_SECRET)}
            start.wait()
            try:
                reply = requests.post(bridge.url + "/segment", data=body, headers=headers,
                                      timeout=60)
                outcomes[i] = reply.status_code
            except requests.RequestException as error:
                outcomes[i] = type(error).__name__

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        # WHEN they all send a signed event
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        # THEN every one is accepted (no refused connection), and every event is delivered
        assert outcomes == [200] * CLIENTS
        assert wait_for(lambda: len(upstream.delivered("/users")) == CLIENTS, timeout=60)


def test_a_1000_event_batch_is_accepted_in_one_request(upstream: FakeUpstream) -> None:
    with LocalBridge(env=env_for(upstream, BRIDGE_SEGMENT_BATCHING="true")) as bridge:
        # GIVEN one signed Segment batch of 1,000 events (small ones: Segment caps a batch
        # at 500 KB)
        events = [{key: value for key, value in identify(i).items()
                   if key in {"type", "messageId", "userId", "receivedAt", "traits"}}
                  for i in range(1000)]
        first = json.dumps(events[0], separators=(",", ":"), ensure_ascii=False).encode()
        # WHEN it is posted
        reply = requests.post(bridge.url + "/segment", data=json.dumps(events).encode(),
                              headers={"content-type": "application/json",
                                       "x-signature": sign_segment(first, SHARED_SECRET)},
                              timeout=60)
        # THEN all of it is accepted, in a handful of queue messages (100 events each)
        assert (reply.status_code, reply.json()["accepted"]) == (200, 1000)
        assert bridge.runtime is not None
        assert bridge.runtime.stats.snapshot()["segment_to_userflow"]["accepted"] == 1000
