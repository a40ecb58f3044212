"""The SQS messages the ingest handler writes and the delivery handler reads.

One event: {"v": 1, "direction", "received_at", "request_id", "event"} as compact JSON.
Several events of one request: {"v": 2, ..., "events": [...]}, packed up to
`MAX_MESSAGE_BYTES` and `MAX_MESSAGE_EVENTS`: SQS bills a request per 64 KiB chunk and boto3
costs about 2 ms of CPU per call, so a Segment batch of 100 small events is one message and
one call instead of 100 messages and 10 calls. Each event is the original Segment event or
Userflow notification; a dead letter always holds one event (version 1), so it can be read,
fixed and replayed alone. An optional `"receives"` carries how often the events were already
received in an earlier message (events re-queued after a partial failure), so the poison
limit counts every receive. Message attribute `direction` repeats the direction for filtering.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from bridge_code.jsonenc import compact_encoder
from bridge_code.stats import DIRECTIONS, Direction

ENVELOPE_VERSION = 1
MANY_EVENTS_VERSION = 2
# SQS rejects messages over 256 KiB (including attributes); keep room for those.
MAX_MESSAGE_BYTES = 250 * 1024
# Events per message: one delivery invocation handles deliveryBatchSize messages, so this
# bounds its work (Userflow has no batch API: one call per event) within its timeout.
MAX_MESSAGE_EVENTS = 100
# One encoder for every JSON text the bridge writes (json.dumps with options would build a new
# encoder per call, a visible cost per event). ASCII-only on purpose: a parsed event may hold
# lone surrogates ("\ud800" is valid JSON) that cannot be encoded as UTF-8, or U+FFFE/U+FFFF,
# which SQS refuses in a message body; escaped, every value survives the trip unchanged.
compact_json = compact_encoder(ensure_ascii=True)
_SQS_REFUSED = ("\ufffe", "\uffff")


class InvalidEnvelope(ValueError):
    """A queue message is not a bridge envelope (poison)."""


@dataclass(frozen=True)
class Envelope:
    direction: Direction
    event: dict[str, Any]
    received_at: str
    request_id: str
    # Receives of this event in earlier messages (see the module docstring).
    receives: int = 0

    def encode(self, raw_event: str | None = None) -> str:
        """The message body; `raw_event` is the event's JSON text as received, if at hand."""
        return encode_envelope(self.direction, self.event, self.received_at, self.request_id,
                               raw_event, self.receives)


def event_text(event: dict[str, Any], raw_event: str | None = None) -> str:
    """The event's JSON text in a message: `raw_event` (as received) unless SQS would refuse it."""
    if raw_event is None or _SQS_REFUSED[0] in raw_event or _SQS_REFUSED[1] in raw_event:
        return compact_json(event)
    return raw_event


def _fields(direction: Direction, received_at: str, request_id: str, receives: int) -> str:
    """The fields every message of one request shares, after its version."""
    extra = f'"receives":{receives},' if receives else ""
    return (f'"direction":"{direction}","received_at":{compact_json(received_at)},'
            f'"request_id":{compact_json(request_id)},{extra}')


def encode_envelope(direction: Direction, event: dict[str, Any], received_at: str,
                    request_id: str, raw_event: str | None = None, receives: int = 0) -> str:
    """`Envelope(...).encode(raw_event)` without building the Envelope (the ingest hot path)."""
    return (f'{{"v":{ENVELOPE_VERSION},{_fields(direction, received_at, request_id, receives)}'
            f'"event":{event_text(event, raw_event)}}}')


def text_size(text: str) -> int:
    """UTF-8 bytes of `text`; most are ASCII (escaped on re-serialization): no copy then."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def pack_envelopes(direction: Direction, texts: list[str], received_at: str,
                   request_id: str, receives: int = 0) -> list[str]:
    """Message bodies carrying the event texts in order, as few as fit `MAX_MESSAGE_BYTES`
    and `MAX_MESSAGE_EVENTS` each; an event alone in its message is a version 1 envelope.
    A body over `MAX_MESSAGE_BYTES` is returned as is: only a single event too large for any
    message makes one, and the caller refuses it."""
    fields = _fields(direction, received_at, request_id, receives)
    if len(texts) == 1:  # one webhook, one unbatched Segment event: the common case
        return [f'{{"v":{ENVELOPE_VERSION},{fields}"event":{texts[0]}}}']
    # The room a version 2 message leaves for its events: `{"v":2,`, `"events":[`, `]}`.
    room = MAX_MESSAGE_BYTES - len(fields) - 24
    groups: list[list[str]] = []
    current: list[str] = []
    used = 0
    for text in texts:
        size = text_size(text) + 1  # with its comma
        if current and (used + size > room or len(current) == MAX_MESSAGE_EVENTS):
            groups.append(current)
            current, used = [], 0
        current.append(text)
        used += size
    if current:
        groups.append(current)
    return [f'{{"v":{ENVELOPE_VERSION},{fields}"event":{group[0]}}}' if len(group) == 1
            else f'{{"v":{MANY_EVENTS_VERSION},{fields}"events":[{",".join(group)}]}}'
            for group in groups]


def _parse(body: str) -> Any:
    """`json.loads(body)`; a body as the bridge writes it (an object, nothing around it) goes
    straight to the decoder's scanner, sparing the wrapper's checks."""
    if body[:1] == "{" and body[-1:] == "}":
        try:
            data, end = _scan(body, 0)
        except StopIteration:  # what the scanner raises where json.loads raises
            pass
        else:
            if end == len(body):
                return data
    return json.loads(body)


# The scanner json.loads runs (the C one where there is one), without its checks around it.
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def decode_envelopes(body: str) -> list[Envelope]:
    """Every event a message carries, in order (one for a version 1 envelope)."""
    try:
        data = _parse(body)
    except (ValueError, RecursionError):
        raise InvalidEnvelope("message body is not JSON") from None
    version = data.get("v") if isinstance(data, dict) else None
    if version not in (ENVELOPE_VERSION, MANY_EVENTS_VERSION):
        raise InvalidEnvelope("message body is not a version 1 or 2 bridge envelope")
    direction = data.get("direction")
    if direction not in DIRECTIONS:
        raise InvalidEnvelope(f"unknown direction {direction!r}")
    events = [data.get("event")] if version == ENVELOPE_VERSION else data.get("events")
    if not isinstance(events, list) or not events:
        raise InvalidEnvelope("envelope events are not a non-empty array")
    if not all(isinstance(event, dict) for event in events):
        raise InvalidEnvelope("envelope event is not an object")
    receives = data.get("receives", 0)
    if type(receives) is not int or receives < 0:
        raise InvalidEnvelope("envelope receives is not a non-negative integer")
    received_at, request_id = str(data.get("received_at", "")), str(data.get("request_id", ""))
    return [Envelope(cast(Direction, direction), event, received_at, request_id, receives)
            for event in events]


def decode_envelope(body: str) -> Envelope:
    """The one event of a message; a message of several events is refused here."""
    envelopes = decode_envelopes(body)
    if len(envelopes) != 1:
        raise InvalidEnvelope(f"message body carries {len(envelopes)} events, not one")
    return envelopes[0]
