"""One JSON object per line on stdout (CloudWatch on Lambda); never payloads or secrets.

Written directly rather than through `logging`: one line per request is all the bridge
logs, and this keeps both the import and each line cheap.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

from bridge_code.jsonenc import compact_encoder

_target: IO[str] | None = None
# Built once: json.dumps with options builds an encoder per call. default=str keeps an odd
# field value from ever failing a request.
_encode = compact_encoder(default=str)
_lock = threading.Lock()
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


def log(message: str, level: str = "INFO", **fields: Any) -> None:
    record = {"time": utc_timestamp_ms(), "level": level, "message": message}
    for key, value in fields.items():
        record[key] = preview(value) if type(value) is str else value
    line = _encode(record) + "\n"
    stream = _target or sys.stdout
    with _lock:
        try:
            stream.write(line)
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stream must never fail a request
