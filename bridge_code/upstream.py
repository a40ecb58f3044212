"""Outgoing HTTP to Userflow and Segment: one connection pool per container, bounded retries.

urllib3 (which botocore already depends on, so it is in every Lambda Python runtime) gives a
thread-safe `PoolManager` with keep-alive, which the concurrent delivery threads share. Its
own retry machinery is off: retries here honour `Retry-After`, use full jitter and stop
before the invocation's deadline. It is imported when the client is built (first
invocation), next to boto3, which imports it anyway: the handler module's import stays light.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import urllib3

# Segment retries these too (not 501); Userflow documents nothing, so the same set applies.
RETRYABLE_STATUSES = frozenset({408, 423, 425, 429, 500, 502, 503, 504, 507, 508, 509, 598, 599})
ERROR_BODY_PREVIEW = 300


@dataclass(frozen=True)
class Outcome:
    """The end of one upstream call after retries."""

    ok: bool
    retryable: bool
    status: int | None
    detail: str
    attempts: int
    # Attempts whose fate is unknown: the request may have been sent and acted on, but the
    # answer was lost (read timeout, connection dropped). A later success may be a repeat.
    uncertain: int = 0
    # Set by the delivery ledger: the event was delivered before, so no call was made.
    already_delivered: bool = False
    # Set by the delivery ledger: this success may be a second effect (see `uncertain`, or
    # an earlier invocation that vanished mid-call).
    ambiguous: bool = False


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as seconds to wait: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils  # rare (HTTP-date form) and ~15 ms to import: keep it off cold start

    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now)


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or (status >= 500 and status != 501)


class UpstreamClient:
    """Sends one request with retries on 429/5xx/timeouts/connection errors."""

    def __init__(self, timeout_seconds: float, max_attempts: int, backoff_base_seconds: float,
                 backoff_cap_seconds: float, pool_size: int = 16,
                 sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random) -> None:
        self._timeout = timeout_seconds
        self._max_attempts = max(1, max_attempts)
        self._base = backoff_base_seconds
        self._cap = backoff_cap_seconds
        self._sleep = sleep
        self._jitter = jitter
        import urllib3

        self._urllib3 = urllib3
        self._pool_size = pool_size
        # One connection pool per origin (scheme://host:port), kept for the container's life.
        # A PoolManager would find the same pool on every call, but parses the URL and builds
        # a pool key each time (a visible share of a call's CPU); the bridge talks to two
        # origins, so the pools are looked up by the URL's origin text instead.
        self._pools: dict[str, urllib3.HTTPConnectionPool] = {}
        self._pools_lock = threading.Lock()

    def _pool_for(self, url: str) -> tuple[urllib3.HTTPConnectionPool, str]:
        """The origin's pool and the request target (path and query) of `url`."""
        scheme_end = url.find("://")
        path_start = url.find("/", scheme_end + 3) if scheme_end > 0 else -1
        origin, target = (url, "/") if path_start < 0 else (url[:path_start], url[path_start:])
        pool = self._pools.get(origin)
        if pool is None:
            with self._pools_lock:
                pool = self._pools.get(origin)
                if pool is None:
                    # maxsize matches the callers (delivery threads and the handler's own)
                    # so no connection is opened and then dropped; retries are ours.
                    pool = self._urllib3.connection_from_url(
                        origin, maxsize=self._pool_size, block=False, retries=False)
                    self._pools[origin] = pool
        return pool, target

    def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
             deadline: float) -> Outcome:
        """Send until success, a permanent failure, the attempt limit or the deadline."""
        detail, status, retryable = "not attempted: no time left", None, True
        attempt = uncertain = 0
        unsure = (self._urllib3.exceptions.ReadTimeoutError,
                  self._urllib3.exceptions.ProtocolError)
        while attempt < self._max_attempts:
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                break
            attempt += 1
            timeout = min(self._timeout, remaining)
            retry_after: float | None = None
            try:
                pool, target = self._pool_for(url)
                response = pool.urlopen(
                    method, target, body=body, headers=dict(headers), redirect=False,
                    retries=False, assert_same_host=False,
                    timeout=self._urllib3.Timeout(connect=min(3.0, timeout), read=timeout))
            except self._urllib3.exceptions.HTTPError as error:
                status, retryable = None, True
                uncertain += isinstance(error, unsure)
                detail = f"{type(error).__name__} calling {method} {url}"
            else:
                status = response.status
                if 200 <= status < 300:
                    return Outcome(True, False, status, f"HTTP {status}", attempt, uncertain)
                retryable = is_retryable_status(status)
                preview = response.data[:ERROR_BODY_PREVIEW].decode("utf-8", "replace")
                detail = f"HTTP {status} from {method} {url}: {preview}"
                retry_after = retry_after_seconds(response.headers.get("Retry-After"),
                                                  time.time())
            if not retryable or attempt >= self._max_attempts:
                break
            backoff = self._jitter() * min(self._cap, self._base * 2 ** (attempt - 1))
            delay = max(backoff, retry_after or 0.0)
            if time.monotonic() + delay >= deadline - 0.05:
                # Waiting would overrun the invocation: let SQS redeliver after the
                # visibility timeout instead.
                detail += f" (next retry in {delay:.1f} s would pass the deadline)"
                break
            self._sleep(delay)
        return Outcome(False, retryable, status, detail, attempt, uncertain)
