"""The threads a delivery batch's upstream calls run on: started as calls need them, reused.

What `concurrent.futures.ThreadPoolExecutor` does for the delivery handler, with less per
call: a batch of calls is handed over at once and waited for at once (one lock per batch
instead of a `Future`, its condition and its lock per call), which is all the handler
needs. As there, a call goes to a thread that has finished its last one if there is such a
thread, else to a new thread up to the maximum; threads stay for the container's next
batches.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class CallBatch(Generic[T]):
    """Calls handed to the pool together; `wait`, then read each one's `result`."""

    __slots__ = ("_done", "_errors", "_left", "_lock", "_results")

    def __init__(self, size: int) -> None:
        self._results: list[T | None] = [None] * size
        self._errors: list[BaseException | None] = [None] * size
        self._left = size
        self._lock = threading.Lock()
        self._done = threading.Lock()  # held until the last call has finished
        if size:
            self._done.acquire()

    def _finish(self, index: int, result: T | None, error: BaseException | None) -> None:
        self._results[index], self._errors[index] = result, error
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._done.release()

    def wait(self) -> None:
        """Until every call of the batch has returned or raised (call once)."""
        if self._results:
            self._done.acquire()

    def result(self, index: int) -> T:
        """The call's return value, or its exception raised again (after `wait`)."""
        error = self._errors[index]
        if error is not None:
            raise error
        return self._results[index]  # type: ignore[return-value]


_Job = tuple[int, Callable[[], object], CallBatch[object]]


class CallPool:
    """At most `max_threads` threads named `<name>_<n>`, shared by the batches."""

    def __init__(self, max_threads: int, name: str) -> None:
        self._max_threads = max_threads
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # calls finished and not yet matched with a new call
        self._lock = threading.Lock()
        self._closed = False

    def start(self, calls: Sequence[Callable[[], T]]) -> CallBatch[T]:
        batch: CallBatch[T] = CallBatch(len(calls))
        if self._closed:
            raise RuntimeError("the call pool is shut down")
        for index, call in enumerate(calls):
            self._jobs.put((index, call, batch))  # type: ignore[arg-type]
            with self._lock:
                if self._idle:
                    self._idle -= 1
                elif len(self._threads) < self._max_threads:
                    thread = threading.Thread(target=self._serve, daemon=True,
                                              name=f"{self._name}_{len(self._threads)}")
                    thread.start()
                    self._threads.append(thread)
        return batch

    def _serve(self) -> None:
        jobs, lock = self._jobs, self._lock
        while (job := jobs.get()) is not None:
            index, call, batch = job
            try:
                result, error = call(), None
            except BaseException as exception:  # handed to the waiting handler, as a Future would
                result, error = None, exception
            with lock:  # counted before the batch hears of it: its next call can come here
                self._idle += 1
            batch._finish(index, result, error)
            del job, call, batch, result, error  # hold nothing while waiting for the next

    def shutdown(self) -> None:
        """Let the threads finish what they hold, then stop them."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:
            thread.join()
