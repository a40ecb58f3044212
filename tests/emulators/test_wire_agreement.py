"""The wire details in docs/ARCHITECTURE.md, checked from both ends: what the emulators send
passes the bridge's own signature verifiers (bridge_code.signatures), single and batched."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from bridge_code.signatures import (
    SignatureError,
    verify_segment_signature,
    verify_userflow_signature,
)
from sandbox.segment import SegmentEmulator
from sandbox.userflow import UserflowEmulator
from tests.emulators.helpers import (
    create_destination,
    create_source,
    create_subscription,
    track,
    userflow_headers,
)
from tests.emulators.receiver import Receiver


@pytest.mark.parametrize("batching", [False, True])
def test_bridge_accepts_segment_deliveries(receiver: Receiver, batching: bool) -> None:
    with SegmentEmulator(batch_window_s=0.2) as segment:
        source = create_source(segment.url, "app")
        destination = create_destination(segment.url, source["id"], secret="bridge-secret")
        settings: dict[str, Any] = {"enable_batching": True, "batch_size": 2} if batching else {}
        create_subscription(segment.url, destination["id"], receiver.url, **settings)

        for name in ("Ünïcode", "Second"):
            track(segment.url, source["writeKeys"][0], "track", {"userId": "u", "event": name})
        received = receiver.wait_for(1 if batching else 2)

    for delivery in received:
        verify_segment_signature(delivery.body, delivery.headers["X-Signature"], ["bridge-secret"],
                                 batched=batching)
        with pytest.raises(SignatureError):
            verify_segment_signature(delivery.body, delivery.headers["X-Signature"], ["other"])
    if batching:
        assert [e["event"] for e in json.loads(received[0].body)] == ["Ünïcode", "Second"]


def test_bridge_accepts_userflow_webhooks(userflow: UserflowEmulator, receiver: Receiver) -> None:
    subscription = requests.post(
        userflow.url + "/webhook_subscriptions",
        json={"api_version": "2020-01-03", "url": receiver.url, "topics": ["*"]},
        headers=userflow_headers(),
        timeout=5,
    ).json()

    requests.post(
        userflow.url + "/users",
        json={"id": "u1", "attributes": {"name": "Zoë"}},
        headers=userflow_headers(),
        timeout=5,
    )
    [delivery] = receiver.wait_for(1)

    header = delivery.headers["Userflow-Signature"]
    verify_userflow_signature(delivery.body, header, [subscription["secret"]], now=time.time())
    with pytest.raises(SignatureError, match="tolerance"):
        verify_userflow_signature(
            delivery.body, header, [subscription["secret"]], now=time.time() + 3600
        )
