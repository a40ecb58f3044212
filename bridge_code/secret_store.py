"""Secrets Manager values cached with a TTL; values never leave this module except to callers.

A secret string may hold several comma-separated values (old and new during a rotation).
After a signature failure the caller may ask for one early refresh, allowed only when the
cached copy is older than `min_refresh_seconds`, so forged requests cannot turn into one
Secrets Manager call each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Five minutes: requests with forged signatures then cost at most one Secrets Manager call
# per 5 min per container, whatever their number. The price: a secret replaced outright is
# seen up to this late (a value holding "old,new" during a rotation avoids the gap).
MIN_REFRESH_SECONDS = 300.0


class SecretUnavailable(Exception):
    """A secret could not be read; the message names the secret id, never its value."""


@dataclass
class _Entry:
    values: tuple[str, ...]
    fetched_at: float


class SecretStore:
    """Fetch-on-first-use cache of secret strings, safe to share between threads."""

    def __init__(self, fetch: Callable[[str], str], ttl_seconds: float,
                 min_refresh_seconds: float = MIN_REFRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._ttl = ttl_seconds
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.fetch_count = 0

    def values(self, secret_id: str) -> tuple[str, ...]:
        """The secret's values (comma-separated in the secret string), from cache when fresh."""
        with self._lock:
            entry = self._entries.get(secret_id)
            if entry is not None and self._clock() - entry.fetched_at < self._ttl:
                return entry.values
            return self._load(secret_id)

    def refresh_if_stale(self, secret_id: str) -> bool:
        """Refetch now if the cached copy is older than the minimum; True if it refetched."""
        with self._lock:
            entry = self._entries.get(secret_id)
            if entry is not None and self._clock() - entry.fetched_at < self._min_refresh:
                return False
            self._load(secret_id)
            return True

    def _load(self, secret_id: str) -> tuple[str, ...]:
        self.fetch_count += 1
        try:
            raw = self._fetch(secret_id)
        except Exception as error:
            # The exception text of a client library is not ours to trust: keep only its type.
            raise SecretUnavailable(
                f"secret {secret_id} could not be read ({type(error).__name__})") from None
        values = tuple(part.strip() for part in raw.split(",") if part.strip())
        if not values:
            raise SecretUnavailable(f"secret {secret_id} is empty")
        self._entries[secret_id] = _Entry(values, self._clock())
        return values
