"""Webhooks (Actions) delivery: each accepted event goes, on background threads, to every
enabled Send subscription (FQL trigger matching) of every enabled Webhooks (Actions)
destination of its source, signed with `X-Signature`, batched if asked, and retried on
5xx/408/423/429/timeouts.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from sandbox.outbound import OutboundRequest
from sandbox.segment.catalog import (
    BATCH_SIZE_RANGE,
    WEBHOOKS_ACTIONS_DESTINATION_ID,
    WEBHOOKS_SEND_ACTION_ID,
)
from sandbox.segment.fql import Node, parse_trigger
from sandbox.wire import JSON_TYPE, JsonObject, compact_json

if TYPE_CHECKING:
    from sandbox.segment.server import SegmentEmulator

DELIVERY_USER_AGENT = "Segment (Actions)"


def _retryable_delivery(status: int | None) -> bool:
    """Segment retries timeouts, 5xx except 501, 408, 423 and 429; other 4xx are final."""
    if status is None:
        return True
    return status in {408, 423, 429} or (status >= 500 and status != 501)


@functools.lru_cache(maxsize=256)
def _compiled_trigger(trigger: str) -> Node:
    """Triggers were validated when saved; parse each once, not once per event."""
    return parse_trigger(trigger)


def segment_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha1).hexdigest()


class Batcher:
    """Collects events per batching subscription; flushes on size or after a short window."""

    def __init__(self, window_s: float, flush: Callable[[str, list[JsonObject]], None]) -> None:
        self.window_s = window_s
        self._flush = flush
        self._lock = threading.Lock()
        self._buffers: dict[str, list[JsonObject]] = {}
        self._timers: dict[str, threading.Timer] = {}

    def add(self, key: str, item: JsonObject, batch_size: int) -> None:
        ready: list[JsonObject] | None = None
        with self._lock:
            buffer = self._buffers.setdefault(key, [])
            buffer.append(item)
            if len(buffer) >= batch_size:
                ready = self._take(key)
            elif len(buffer) == 1:
                timer = threading.Timer(self.window_s, self._on_timer, args=(key,))
                timer.daemon = True
                self._timers[key] = timer
                timer.start()
        if ready:
            self._flush(key, ready)

    def _take(self, key: str) -> list[JsonObject]:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        return self._buffers.pop(key, [])

    def _on_timer(self, key: str) -> None:
        with self._lock:
            ready = self._take(key)
        if ready:
            self._flush(key, ready)

    def clear(self) -> None:
        with self._lock:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            self._buffers.clear()


def fan_out(emu: SegmentEmulator, source_id: str, event: JsonObject) -> None:
    with emu.lock:
        targets = [
            (destination, subscription)
            for destination in emu.destinations.values()
            if destination["sourceId"] == source_id
            and destination["enabled"]
            and destination["metadataId"] == WEBHOOKS_ACTIONS_DESTINATION_ID
            for subscription in emu.subscriptions.values()
            if subscription["destinationId"] == destination["id"]
            and subscription["enabled"]
            and subscription["actionId"] == WEBHOOKS_SEND_ACTION_ID
            and _compiled_trigger(subscription["trigger"]).matches(event)
        ]
        plans = [
            (subscription["id"], dict(subscription["settings"]), destination)
            for destination, subscription in targets
        ]
        secrets = {d["id"]: d["settings"].get("sharedSecret") for d, _ in targets}
    for subscription_id, settings, destination in plans:
        item = {
            "event": event,
            "settings": settings,
            "destination_id": destination["id"],
            "source_id": source_id,
            "secret": secrets[destination["id"]],
        }
        if settings.get("enable_batching"):
            size = int(settings.get("batch_size") or BATCH_SIZE_RANGE[1])
            emu.batcher.add(subscription_id, item, size)
        else:
            send(emu, subscription_id, [item], batched=False)


def send(
    emu: SegmentEmulator, subscription_id: str, items: list[JsonObject], batched: bool
) -> None:
    first = items[0]
    settings: JsonObject = first["settings"]
    events = [item["event"] for item in items]
    body = compact_json(events) if batched else compact_json(events[0])
    # Batches are signed over the first event serialized alone (docs/ARCHITECTURE.md).
    signed = compact_json(events[0]) if batched else body
    headers = {str(k): str(v) for k, v in (settings.get("headers") or {}).items()}
    headers.update({"Content-Type": JSON_TYPE, "User-Agent": DELIVERY_USER_AGENT})
    secret = first["secret"]
    if isinstance(secret, str) and secret:
        headers["X-Signature"] = segment_signature(secret, signed)
    emu.deliveries.submit(
        OutboundRequest(
            delivery_id=f"dlv-{emu.delivery_ids.token(16)}",
            url=str(settings["url"]),
            method=str(settings.get("method") or "POST"),
            headers=headers,
            body=body,
            retryable=_retryable_delivery,
            meta={
                "destination_id": first["destination_id"],
                "source_id": first["source_id"],
                "subscription_id": subscription_id,
                "batched": batched,
                "message_ids": [e.get("messageId") for e in events],
                # For the delivery metrics' timings (`observability`).
                "received_at": [e.get("receivedAt") for e in events],
                # Exactly what went on the wire (compact JSON is UTF-8, so the text is the
                # bytes), so a test can resend a genuine signed delivery: a replay.
                "body": body.decode("utf-8"),
                "signature": headers.get("X-Signature"),
            },
        )
    )
