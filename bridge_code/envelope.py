"""The SQS message the ingest handler writes and the delivery handler reads: one per event.

Body: {"v": 1, "direction", "event", "received_at", "request_id"} as compact JSON; the
`event` is the original Segment event or Userflow notification, so a dead letter can be
read, fixed and replayed. Message attribute `direction` repeats the direction for filtering.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from bridge_code.jsonenc import compact_encoder
from bridge_code.stats import DIRECTIONS, Direction

ENVELOPE_VERSION = 1
# SQS rejects messages over 256 KiB (including attributes); keep room for those.
MAX_MESSAGE_BYTES = 250 * 1024
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

    def encode(self, raw_event: str | None = None) -> str:
        """The message body; `raw_event` is the event's JSON text as received, if at hand."""
        return encode_envelope(self.direction, self.event, self.received_at, self.request_id,
                               raw_event)


def encode_envelope(direction: Direction, event: dict[str, Any], received_at: str,
                    request_id: str, raw_event: str | None = None) -> str:
    """`Envelope(...).encode(raw_event)` without building the Envelope (the ingest hot path)."""
    if raw_event is None or _SQS_REFUSED[0] in raw_event or _SQS_REFUSED[1] in raw_event:
        text = compact_json(event)
    else:
        text = raw_event
    return (f'{{"v":{ENVELOPE_VERSION},"direction":"{direction}",'
            f'"received_at":{compact_json(received_at)},'
            f'"request_id":{compact_json(request_id)},"event":{text}}}')


def decode_envelope(body: str) -> Envelope:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidEnvelope("message body is not JSON") from None
    if not isinstance(data, dict) or data.get("v") != ENVELOPE_VERSION:
        raise InvalidEnvelope("message body is not a version 1 bridge envelope")
    direction, event = data.get("direction"), data.get("event")
    if direction not in DIRECTIONS:
        raise InvalidEnvelope(f"unknown direction {direction!r}")
    if not isinstance(event, dict):
        raise InvalidEnvelope("envelope event is not an object")
    return Envelope(cast(Direction, direction), event, str(data.get("received_at", "")),
                    str(data.get("request_id", "")))
