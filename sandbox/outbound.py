"""Outbound webhooks of the emulators: sent on background threads, never on the request's
thread, and retried on a compressed clock, each attempt recorded with its outcome.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sandbox.wire import JsonObject, utc_now_iso


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on a compressed clock: `backoff_s * 2**(attempt-1)` between attempts."""

    max_attempts: int = 5
    backoff_s: float = 0.2
    timeout_s: float = 10.0


@dataclass
class OutboundRequest:
    """One webhook to send (and resend): everything but the attempt number is fixed."""

    delivery_id: str
    url: str
    method: str
    headers: dict[str, str]
    body: bytes
    retryable: Callable[[int | None], bool]
    meta: JsonObject = field(default_factory=dict)


def delivery_outcome(status: int | None, retryable: bool, last_attempt: bool) -> str:
    """What one attempt meant: `success` (2xx), `retry` (another attempt follows), `discarded`
    (a final refusal, not retried) or `expired` (retryable, but the attempts are used up)."""
    if status is not None and 200 <= status < 300:
        return "success"
    if not retryable:
        return "discarded"
    return "expired" if last_attempt else "retry"


class DeliveryWorkers:
    """Sends outbound webhooks on background threads, never on the request's thread.

    Every attempt is recorded through `record` (status, attempt number, latency, error, and its
    `outcome`, see `delivery_outcome`);
    `pending` counts deliveries not yet finished so tests can wait for quiet.
    """

    def __init__(
        self, policy: RetryPolicy, record: Callable[[JsonObject], None], workers: int = 8
    ) -> None:
        self.policy = policy
        self._record = record
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emu-delivery")
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition(self._lock)

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def submit(self, outbound: OutboundRequest) -> None:
        with self._lock:
            self._pending += 1
        self._pool.submit(self._run, outbound)

    def wait_idle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        self._stopping.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, outbound: OutboundRequest) -> None:
        try:
            for attempt in range(1, self.policy.max_attempts + 1):
                if self._stopping.is_set():
                    return
                status, error, latency_ms = self._attempt(outbound)
                outcome = delivery_outcome(
                    status, outbound.retryable(status), attempt == self.policy.max_attempts
                )
                self._record(
                    {
                        "delivery_id": outbound.delivery_id,
                        "attempt": attempt,
                        "url": outbound.url,
                        "method": outbound.method,
                        "status": status,
                        "error": error,
                        "outcome": outcome,
                        "latency_ms": latency_ms,
                        "at": utc_now_iso(),
                        **outbound.meta,
                    }
                )
                if outcome != "retry":
                    return
                if self._stopping.wait(self.policy.backoff_s * 2 ** (attempt - 1)):
                    return
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _attempt(self, outbound: OutboundRequest) -> tuple[int | None, str | None, float]:
        """One try: (status or None, error or None, latency in ms)."""
        request = urllib.request.Request(  # noqa: S310 - URLs come from subscriptions the test made
            outbound.url, data=outbound.body, method=outbound.method, headers=outbound.headers
        )
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            with urllib.request.urlopen(request, timeout=self.policy.timeout_s) as reply:  # noqa: S310
                status = int(reply.status)
                reply.read()
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        return status, error, round((time.monotonic() - started) * 1000, 1)
