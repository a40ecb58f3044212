"""The Segment Tracking API (`/v1/identify|track|page|screen|group|alias|batch`).

Basic auth or `writeKey` in the body; 400 only for invalid JSON or oversize payloads; everything
else answers 200 and events that cannot be accepted (unknown write key, no userId/anonymousId,
track without event, disabled source, a messageId of 100+ characters) are dropped, as the real
collector does, and listed in `dropped`. A repeated messageId within a source is dropped as a
duplicate. Accepted events are stored and handed to `delivery`.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import TYPE_CHECKING

from sandbox.segment.delivery import fan_out
from sandbox.wire import (
    BadJson,
    HttpRequest,
    HttpResponse,
    JsonObject,
    compact_json,
    json_response,
    parse_json,
    utc_now_iso,
)

if TYPE_CHECKING:
    from sandbox.segment.server import SegmentEmulator

TRACKING_TYPES = ("identify", "track", "page", "screen", "group", "alias")
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
MAX_MESSAGE_ID_CHARS = 100


def tracking_error(status: int, message: str) -> HttpResponse:
    """The Tracking API's own error body (it has no `errors` envelope)."""
    return json_response(status, {"success": False, "message": message})


def handle_tracking(emu: SegmentEmulator, request: HttpRequest) -> HttpResponse:
    kind = request.path[len("/v1/") :].strip("/")
    if request.method != "POST" or kind not in (*TRACKING_TYPES, "batch"):
        return tracking_error(404, "not found")
    raw = request.body
    limit = MAX_BATCH_BYTES if kind == "batch" else MAX_EVENT_BYTES
    if request.header("Content-Encoding").lower() == "gzip":
        try:
            raw = _gunzip(raw, limit + 1)  # a small body may inflate to gigabytes
        except (OSError, EOFError, zlib.error):
            return tracking_error(400, "invalid gzip body")
    if len(raw) > limit:
        return tracking_error(400, f"payload exceeds {limit // 1024} KB")
    try:
        payload = parse_json(raw)
    except BadJson as exc:
        return tracking_error(400, f"invalid JSON: {exc}")
    if not isinstance(payload, dict):
        return tracking_error(400, "body must be a JSON object")
    if kind == "batch":
        items = payload.get("batch")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            return tracking_error(400, "batch must be a list of events")
        if len(items) > MAX_BATCH_EVENTS:
            return tracking_error(400, f"more than {MAX_BATCH_EVENTS} events")
        for item in items:
            if len(compact_json(item)) > MAX_EVENT_BYTES:
                return tracking_error(400, f"an event exceeds {MAX_EVENT_BYTES // 1024} KB")
        events = [_inherit_batch_fields(payload, item) for item in items]
    else:
        events = [{**payload, "type": kind}]
    write_key = _write_key(request, payload)
    _accept(emu, write_key, events)
    return json_response(200, {"success": True})


def _gunzip(raw: bytes, max_bytes: int) -> bytes:
    """At most `max_bytes` of the inflated body (enough to tell it is too big)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    inflated = inflater.decompress(raw, max_bytes)
    if len(inflated) < max_bytes and not inflater.eof:
        raise EOFError("truncated gzip body")
    return inflated


def _inherit_batch_fields(batch: JsonObject, item: JsonObject) -> JsonObject:
    event = dict(item)
    for key in ("context", "integrations"):
        shared = batch.get(key)
        if isinstance(shared, dict):
            own = event.get(key)
            event[key] = {**shared, **own} if isinstance(own, dict) else dict(shared)
    return event


def _write_key(request: HttpRequest, payload: JsonObject) -> str | None:
    scheme, _, credentials = request.header("Authorization").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        user = decoded.partition(":")[0]
        if user:
            return user
    body_key = payload.get("writeKey")
    return body_key if isinstance(body_key, str) and body_key else None


def _drop(
    emu: SegmentEmulator, reason: str, event: JsonObject | None, write_key: str | None
) -> None:
    emu.dropped.append(
        {
            "reason": reason,
            "messageId": (event or {}).get("messageId"),
            "type": (event or {}).get("type"),
            "writeKeyKnown": write_key is not None,
            "at": utc_now_iso(),
        }
    )


def _accept(emu: SegmentEmulator, write_key: str | None, events: list[JsonObject]) -> None:
    accepted: list[tuple[str, JsonObject]] = []
    with emu.lock:
        source = next(
            (s for s in emu.sources.values() if write_key and write_key in s["writeKeys"]),
            None,
        )
        for event in events:
            if source is None:
                reason = "unknown write key" if write_key else "no write key"
                _drop(emu, reason, event, write_key)
                continue
            problem = _event_problem(event)
            if problem is not None:
                _drop(emu, problem, event, write_key)
                continue
            if not source["enabled"]:
                _drop(emu, "source disabled", event, write_key)
                continue
            stored = _normalise(emu, event)
            seen = emu.message_ids.setdefault(source["id"], set())
            if stored["messageId"] in seen:
                emu.deduplicated += 1
                continue
            seen.add(stored["messageId"])
            emu.events.setdefault(source["id"], []).append(stored)
            accepted.append((source["id"], stored))
    for source_id, stored in accepted:
        fan_out(emu, source_id, stored)


def _event_problem(event: JsonObject) -> str | None:
    if event.get("type") not in TRACKING_TYPES:
        return f"unknown type {event.get('type')!r}"
    if not event.get("userId") and not event.get("anonymousId"):
        return "missing userId and anonymousId"
    if event["type"] == "track" and not event.get("event"):
        return "track without event"
    message_id = event.get("messageId")
    if message_id is not None and (
        not isinstance(message_id, str) or len(message_id) >= MAX_MESSAGE_ID_CHARS
    ):
        return "messageId must be a string under 100 characters"
    return None


def _normalise(emu: SegmentEmulator, event: JsonObject) -> JsonObject:
    """What the collector adds before destinations see the event."""
    now = utc_now_iso()
    stored = {key: value for key, value in event.items() if key != "writeKey"}
    stored.setdefault("messageId", f"api-{emu.event_ids.token(27)}")
    stored.setdefault("timestamp", stored.get("sentAt") or now)
    stored.setdefault("context", {})
    stored.setdefault("integrations", {})
    stored["receivedAt"] = now
    return stored
