"""One JSON object per line on stdout (CloudWatch on Lambda); never payloads or secrets."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import IO, Any


class _LineHandler(logging.Handler):
    """Writes each record as one line to the chosen stream, else to the current sys.stdout."""

    def __init__(self) -> None:
        super().__init__()
        self.target: IO[str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        stream = self.target or sys.stdout
        try:
            stream.write(record.getMessage() + "\n")
            stream.flush()
        except (OSError, ValueError):
            self.handleError(record)


_logger = logging.getLogger("bridge")
_handler = _LineHandler()
_logger.addHandler(_handler)
_logger.setLevel(logging.INFO)
# The Lambda runtime puts its own handler on the root logger: don't print every line twice.
_logger.propagate = False


def use_stream(stream: IO[str]) -> None:
    """Send the log lines elsewhere (the local runner keeps stdout for its READY line)."""
    _handler.target = stream


def log(message: str, level: int = logging.INFO, **fields: Any) -> None:
    record = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
              "level": logging.getLevelName(level), "message": message, **fields}
    _logger.log(level, json.dumps(record, default=str, separators=(",", ":")))
