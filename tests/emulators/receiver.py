"""A tiny in-test webhook receiver: records every request and answers from a script.

`Receiver(statuses=[500, 200])` answers 500 to the first request, then 200 for the rest;
`delays_s` likewise makes the first requests slow (to provoke client timeouts).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


class Receiver:
    def __init__(self, statuses: list[int] | None = None, delays_s: list[float] | None = None):
        self._statuses = list(statuses or [])
        self._delays = list(delays_s or [])
        self._lock = threading.Condition()
        self.requests: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    status = receiver._statuses.pop(0) if receiver._statuses else 200
                    delay = receiver._delays.pop(0) if receiver._delays else 0.0
                # Recorded before answering, so a client that saw the answer sees the record.
                with receiver._lock:
                    receiver.requests.append(
                        Received(self.command, self.path, dict(self.headers.items()), body, status)
                    )
                    receiver._lock.notify_all()
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[Received]:
        """Block until `count` requests arrived (bounded); return what arrived."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(remaining)
            return list(self.requests)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
