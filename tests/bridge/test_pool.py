"""The delivery handler's call pool: every call of a batch runs, at once up to the maximum,
on threads started only as needed and kept; results and exceptions come back per call."""

from __future__ import annotations

import threading
import time

import pytest

from bridge_code.pool import CallPool


def test_results_and_exceptions_come_back_per_call_in_order() -> None:
    pool = CallPool(4, "test-pool")
    try:
        def failing() -> int:
            raise ValueError("third")

        calls = [lambda: 1, lambda: 2, failing, lambda: 4]
        batch = pool.start(calls)
        batch.wait()
        assert [batch.result(i) for i in (0, 1, 3)] == [1, 2, 4]
        with pytest.raises(ValueError, match="third"):
            batch.result(2)
    finally:
        pool.shutdown()


def test_calls_run_at_once_up_to_the_maximum_on_threads_started_as_needed() -> None:
    pool = CallPool(3, "test-pool")
    try:
        # Three calls that can only finish together: they must run on three threads at once.
        barrier = threading.Barrier(3, timeout=10)

        def together() -> str:
            barrier.wait()
            return threading.current_thread().name

        batch = pool.start([together] * 3)
        batch.wait()
        names = [batch.result(i) for i in range(3)]
        assert sorted(names) == ["test-pool_0", "test-pool_1", "test-pool_2"]
        # More calls than threads: queued, run by the same three, no fourth thread.
        batch = pool.start([lambda: threading.current_thread().name] * 10)
        batch.wait()
        assert {batch.result(i) for i in range(10)} <= set(names)
        assert len(pool._threads) == 3
    finally:
        pool.shutdown()


def test_a_small_batch_starts_only_the_threads_it_needs() -> None:
    pool = CallPool(64, "test-pool")
    try:
        for _ in range(5):
            batch = pool.start([lambda: None, lambda: None])
            batch.wait()
        assert len(pool._threads) == 2
        pool.start([]).wait()  # nothing to wait for
    finally:
        pool.shutdown()


def test_wait_returns_only_once_every_call_has_finished() -> None:
    pool = CallPool(2, "test-pool")
    finished: list[int] = []
    try:
        def slow(n: int) -> int:
            time.sleep(0.05 * n)
            finished.append(n)
            return n

        batch = pool.start([lambda: slow(2), lambda: slow(1)])
        batch.wait()
        assert sorted(finished) == [1, 2]
    finally:
        pool.shutdown()


def test_shutdown_stops_the_threads_and_refuses_new_batches() -> None:
    pool = CallPool(2, "test-pool")
    pool.start([lambda: None, lambda: None]).wait()
    threads = list(pool._threads)
    pool.shutdown()
    assert not any(thread.is_alive() for thread in threads)
    with pytest.raises(RuntimeError):
        pool.start([lambda: None])
