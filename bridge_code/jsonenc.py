"""Compact JSON encoders built once, for the texts the bridge writes on every event.

`json.JSONEncoder(...).encode` re-creates its C encoder and a circular-reference memo on
every call; for the small objects the bridge writes (queue envelopes' parts, upstream bodies,
response bodies, log lines) that setup costs more than the encoding. The C encoder built
here once gives the same text (it is the one `encode` builds); only a self-containing object
would differ (RecursionError instead of ValueError), and the bridge only encodes parsed JSON
and values it builds, which cannot contain themselves.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from typing import Any


def compact_encoder(ensure_ascii: bool = True,
                    default: Callable[[Any], Any] | None = None) -> Callable[[Any], str]:
    """`json.JSONEncoder(separators=(",", ":"), ensure_ascii=..., default=...).encode`."""
    reference = json.JSONEncoder(separators=(",", ":"), ensure_ascii=ensure_ascii,
                                 default=default)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator: the plain encoder
        return reference.encode
    string = (json.encoder.encode_basestring_ascii if ensure_ascii
              else json.encoder.encode_basestring)
    # Arguments as JSONEncoder.iterencode passes them: no circular-reference memo, the
    # default hook, the string encoder, no indent, separators, sort_keys, skipkeys,
    # allow_nan.
    iterencode = make(None, reference.default, string, None, ":", ",", False, False, True)
    join = "".join

    def encode(value: Any) -> str:
        return join(iterencode(value, 0))

    return encode
