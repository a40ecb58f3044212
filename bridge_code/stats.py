"""Per-direction counters the handlers keep; the local runner serves them as /__sandbox__/stats."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Literal

Direction = Literal["segment_to_userflow", "userflow_to_segment"]
DIRECTIONS: tuple[Direction, ...] = ("segment_to_userflow", "userflow_to_segment")
# accepted: enqueued by ingest; delivered: accepted upstream (or absorbed as a duplicate of
# a delivered message in the same batch); dead_lettered: moved to the DLQ; retried: extra
# upstream attempts; requeued: left for SQS to redeliver; replayed: moved back from the DLQ;
# duplicates: delivered without a call (the same event seen in the batch, or delivered before
# according to the ledger); ambiguous: delivered after an attempt whose fate is unknown, so
# possibly twice.
COUNTERS = ("accepted", "delivered", "dead_lettered", "retried", "requeued", "replayed",
            "duplicates", "ambiguous", "upstream_calls")


class BridgeStats:
    """Thread-safe counters, one set per direction, plus skip reasons."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {d: Counter() for d in DIRECTIONS}
        self._skipped: dict[str, Counter[str]] = {d: Counter() for d in DIRECTIONS}

    def add(self, direction: Direction, counter: str, n: int = 1) -> None:
        with self._lock:
            self._counts[direction][counter] += n

    def skip(self, direction: Direction, reason: str, n: int = 1) -> None:
        with self._lock:
            self._skipped[direction][reason] += n

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {d: {**{c: self._counts[d][c] for c in COUNTERS},
                        "skipped": dict(self._skipped[d])} for d in DIRECTIONS}
