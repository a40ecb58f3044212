"""One JSON object per line on stdout (CloudWatch on Lambda); never payloads or secrets.

Written directly rather than through `logging`: one line per request is all the bridge
logs, and this keeps both the import and each line cheap.
"""

from __future__ import annotations

import json.encoder
import sys
import threading
import time
from typing import IO, Any

from bridge_code.jsonenc import compact_encoder

_target: IO[str] | None = None
# Built once: json.dumps with options builds an encoder per call. default=str keeps an odd
# field value from ever failing a request.
_encode = compact_encoder(default=str)
_text = json.encoder.encode_basestring_ascii  # a str as a JSON string, as _encode writes it
_RESERVED = frozenset({"time", "level", "message"})
_lock = threading.Lock()
# Per thread: the summary lines held back while `bridge_code.metrics.measured` runs a handler
# on that thread (None: write them at once).
_local = threading.local()
# A log line stays small whatever a request holds (a 100 KB path must not become a 100 KB
# line): every text field is cut to this many characters.
LOG_FIELD_MAX_CHARS = 256
# (whole second, its "YYYY-MM-DDTHH:MM:SS" text): formatting a datetime costs a few µs per
# line; the seconds part changes at most once a second. One tuple, so a racing thread reads
# a consistent pair.
_second: tuple[int, str] = (-1, "")


def _utc_parts(now: float) -> tuple[str, int]:
    """("YYYY-MM-DDTHH:MM:SS", microseconds) of a Unix time, rounded as datetime does."""
    global _second
    whole = int(now // 1)
    micros = round((now - whole) * 1e6)  # as datetime.fromtimestamp rounds
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    second, text = _second
    if whole != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, text)
    return text, micros


def utc_timestamp_ms(now: float | None = None) -> str:
    """`now` (default: the time) as UTC `datetime.isoformat(timespec="milliseconds")`."""
    text, micros = _utc_parts(time.time() if now is None else now)
    return f"{text}.{micros // 1000:03d}+00:00"


def utc_isoformat(now: float) -> str:
    """`datetime.fromtimestamp(now, UTC).isoformat()`, exactly, without building a datetime."""
    text, micros = _utc_parts(now)
    return f"{text}.{micros:06d}+00:00" if micros else f"{text}+00:00"


def use_stream(stream: IO[str]) -> None:
    """Send the log lines elsewhere (the local runner keeps stdout for its READY line)."""
    global _target
    _target = stream


def preview(text: str, limit: int = LOG_FIELD_MAX_CHARS) -> str:
    """`text` cut to `limit` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text)} chars)"


def _line(message: str, level: str, fields: dict[str, Any]) -> str:
    """`{"time": ..., "level": level, "message": message, **fields}` as one JSON line, every
    text field cut to `LOG_FIELD_MAX_CHARS`."""
    now = utc_timestamp_ms()
    if _RESERVED.isdisjoint(fields):
        # The leading members written directly (the time text needs no escaping), the fields
        # in one call. A text field over the limit makes them longer than the limit: only
        # then are the fields looked at one by one.
        members = _encode(fields)
        if len(members) <= LOG_FIELD_MAX_CHARS or not any(
                type(v) is str and len(v) > LOG_FIELD_MAX_CHARS for v in fields.values()):
            head = f'{{"time":"{now}","level":{_text(level)},"message":{_text(message)}'
            return f"{head},{members[1:]}" if fields else head + "}"
    record = {"time": now, "level": level, "message": message, **fields}
    for key, value in fields.items():
        if type(value) is str and len(value) > LOG_FIELD_MAX_CHARS:
            record[key] = preview(value)
    return _encode(record)


def _write(text: str) -> None:
    stream = _target or sys.stdout
    with _lock:
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stream must never fail a request


def log(message: str, level: str = "INFO", **fields: Any) -> None:
    _write(_line(message, level, fields) + "\n")


def summary(message: str, **fields: Any) -> None:
    """The one line that sums up an invocation (a request, a batch). Held back while
    `hold_summaries` is in force on this thread, so that the invocation's metrics can join it
    (`release_summaries`); written at once otherwise."""
    text = _line(message, "INFO", fields)
    held: list[str] | None = getattr(_local, "held", None)
    if held is None:
        _write(text + "\n")
    else:
        held.append(text)


def hold_summaries() -> None:
    """Hold this thread's summary lines until `release_summaries`."""
    _local.held = []


def release_summaries(documents: list[str]) -> None:
    """Stop holding, and write the held summary lines with the members of `documents` (JSON
    objects with at least one member; in Lambda the invocation's EMF metrics) joined to the
    first of them; documents left over are lines of their own. All of it in one write: one
    system call per invocation."""
    lines: list[str] = getattr(_local, "held", None) or []
    _local.held = None
    rest = documents
    if lines and documents:
        # '{"time":...,"message":"request",...}' + '{"_aws":...}' -> '{"time":...,"_aws":...}'
        lines[0] = f"{lines[0][:-1]},{documents[0][1:]}"
        rest = documents[1:]
    lines += [f"{_line('metrics', 'INFO', {})[:-1]},{document[1:]}" for document in rest]
    if lines:
        _write("\n".join(lines) + "\n")
