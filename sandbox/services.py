"""Sandbox processes the demo owns: start one (`python -m sandbox <name> --port P`), wait for
its READY line, keep draining its output, and always stop it (terminate, then kill).

A `ServiceGroup` stops everything it started on exit, on an exception and on SIGTERM/SIGINT,
so a failed or interrupted demo leaves no emulator or bridge behind.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Self

from ops.engine import REPO_ROOT

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0


class ServiceError(RuntimeError):
    """A sandbox process did not come up (the message carries its last output lines)."""


def free_port() -> int:
    """A port free right now on 127.0.0.1 (for a process whose URL must be known first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_ready_line(line: str, name: str) -> str | None:
    """The URL from `READY <name> <url>`, or None for any other line."""
    parts = line.strip().split()
    if len(parts) == 3 and parts[0] == "READY" and parts[1] == name:
        return parts[2]
    return None


@dataclass
class Service:
    """One running sandbox process and the tail of what it printed."""

    name: str
    process: subprocess.Popen[str]
    url: str
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=50))

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        # SIGTERM, not SIGINT: a process started from a background job inherits SIGINT as
        # ignored, while SIGTERM always ends it (the bridge also shuts down cleanly on it).
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)


def start_service(
    name: str,
    *,
    port: int = 0,
    args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    timeout_s: float = READY_TIMEOUT_S,
) -> Service:
    """Start `python -m sandbox <name> --port <port>` and return once it printed READY."""
    cmd = [sys.executable, "-m", "sandbox", name, "--port", str(port), *args]
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
        cmd,
        cwd=REPO_ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        # Its own process group: a Ctrl-C in the terminal reaches the demo, which then stops
        # the children in order, instead of every process dying at once mid-request.
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    tail: collections.deque[str] = collections.deque(maxlen=50)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line.rstrip("\n"))
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name=f"{name}-output", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    url: str | None = None
    while url is None:
        remaining = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(remaining, 0.01))
        except queue.Empty:
            line = ""
        if line is None or remaining <= 0:
            service = Service(name, process, "", tail)
            service.stop()
            why = "exited" if line is None else f"printed no READY line within {timeout_s:.0f} s"
            shown = "\n".join(tail) or "(no output)"
            raise ServiceError(f"sandbox {name} {why}; its last output:\n{shown}")
        url = parse_ready_line(line, name)
    return Service(name, process, url, tail)


class ServiceGroup:
    """Owns started services; stops them all on exit, failure, SIGTERM or Ctrl-C."""

    def __init__(self) -> None:
        self.services: list[Service] = []
        self._previous: dict[int, object] = {}

    def start(self, name: str, **kwargs: object) -> Service:
        service = start_service(name, **kwargs)  # type: ignore[arg-type]
        self.services.append(service)
        return service

    def stop_all(self) -> None:
        while self.services:
            service = self.services.pop()
            with contextlib.suppress(Exception):
                service.stop()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Turn SIGTERM into the same path as Ctrl-C: the `with` block unwinds and stops all.
        raise KeyboardInterrupt(f"signal {signum}")

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_signal)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()


@contextlib.contextmanager
def services() -> Iterator[ServiceGroup]:
    with ServiceGroup() as group:
        yield group
