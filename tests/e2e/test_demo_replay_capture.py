"""What the demo replays: the Segment emulator's delivery log holds each delivery exactly as
it went on the wire (body bytes and X-Signature), so resending it is a genuine replay."""

from __future__ import annotations

from sandbox.segment import SegmentEmulator
from sandbox.traffic import capture_delivery, plan_traffic
from tests.emulators.helpers import (
    create_destination,
    create_source,
    create_subscription,
    track,
)
from tests.emulators.receiver import Receiver

TRIGGER = 'type = "identify" or type = "track" or type = "group"'


def test_the_delivery_log_holds_the_exact_bytes_and_signature_sent() -> None:
    plan = plan_traffic(1, 5)
    calls = {c.kind: c for c in plan.forwarded_calls if not c.echo}
    with SegmentEmulator(batch_window_s=0.2) as segment, Receiver() as receiver:
        source = create_source(segment.url, "app")
        destination = create_destination(segment.url, source["id"], secret="replay-secret")
        create_subscription(segment.url, destination["id"], receiver.url + "/segment",
                            trigger=TRIGGER)
        # GIVEN one identify and one track with a non-ASCII property (UTF-8 on the wire)
        for kind in ("identify", "track"):
            call = calls[kind]
            body = {"userId": call.user_id, "messageId": call.message_id,
                    **({"event": call.event, "properties": {"city": "Zürich"}}
                       if kind == "track" else {"traits": {"name": "Zoë"}})}
            track(segment.url, source["writeKeys"][0], kind, body)
        received = receiver.wait_for(2)
        assert segment.deliveries.wait_idle(10.0)
        log = segment.delivery_log()
    # THEN each attempt records the bytes and the signature the receiver got
    wire = {(r.body, r.headers["X-Signature"]) for r in received}
    assert {(a["body"].encode("utf-8"), a["signature"]) for a in log} == wire
    # AND the demo captures the track's delivery, byte for byte
    captured = capture_delivery(plan, log, destination["id"])
    assert captured is not None
    assert captured.message_ids == (calls["track"].message_id,)
    assert (captured.body, captured.signature) in wire
    assert captured.url == receiver.url + "/segment"
    assert "Zürich".encode() in captured.body
