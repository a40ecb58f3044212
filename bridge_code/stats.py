"""Per-direction counters the handlers keep; the local runner serves them as /__sandbox__/stats."""

from __future__ import annotations

import threading
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

Changes = dict[tuple[str, str], int]
"""(direction, counter or skip reason) -> how much it grew."""


class BridgeStats:
    """Thread-safe counters, one set per direction, plus skip reasons.

    Besides the totals it keeps what changed since `take_changes()` was last called: the
    metrics of one invocation (bridge_code/metrics.py) are exactly that, read without copying
    and comparing every counter twice per invocation.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._skipped: dict[tuple[str, str], int] = {}
        self._counts_changed: Changes = {}
        self._skips_changed: Changes = {}

    def add(self, direction: Direction, counter: str, n: int = 1) -> None:
        if not n:
            return  # adding nothing changes nothing (delivery adds its duplicates, often 0)
        key = (direction, counter)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n
            changed = self._counts_changed
            changed[key] = changed.get(key, 0) + n

    def skip(self, direction: Direction, reason: str, n: int = 1) -> None:
        if not n:
            return
        key = (direction, reason)
        with self._lock:
            self._skipped[key] = self._skipped.get(key, 0) + n
            changed = self._skips_changed
            changed[key] = changed.get(key, 0) + n

    def take_changes(self) -> tuple[Changes, Changes]:
        """(counter changes, skip changes) since the last call, and start afresh."""
        with self._lock:
            counts, skips = self._counts_changed, self._skips_changed
            self._counts_changed, self._skips_changed = {}, {}
        return counts, skips

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            counts, skipped = dict(self._counts), dict(self._skipped)
        return {d: {**{c: counts.get((d, c), 0) for c in COUNTERS},
                    "skipped": {reason: n for (direction, reason), n in skipped.items()
                                if direction == d}} for d in DIRECTIONS}
