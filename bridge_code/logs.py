"""One JSON object per line on stdout (CloudWatch on Lambda); never payloads or secrets.

Written directly rather than through `logging`: one line per request is all the bridge
logs, and this keeps both the import and each line cheap.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
from typing import IO, Any

_target: IO[str] | None = None
# Built once: json.dumps with options builds an encoder per call. default=str keeps an odd
# field value from ever failing a request.
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
_lock = threading.Lock()


def use_stream(stream: IO[str]) -> None:
    """Send the log lines elsewhere (the local runner keeps stdout for its READY line)."""
    global _target
    _target = stream


def log(message: str, level: str = "INFO", **fields: Any) -> None:
    record = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
              "level": level, "message": message, **fields}
    line = _encode(record) + "\n"
    stream = _target or sys.stdout
    with _lock:
        try:
            stream.write(line)
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stream must never fail a request
