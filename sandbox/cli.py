"""What every long-running sandbox command shares: where it listens, and how it is stopped."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType


def add_listen_arguments(parser: argparse.ArgumentParser) -> None:
    """`--host` and `--port`."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM. Installed before the process starts its work, so a
    stop asked for during start-up is not lost, and the caller tears down cleanly."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stopping


def wait_until(stopping: threading.Event) -> None:
    """Block the main thread until a stop is asked for (short waits keep it signal-responsive)."""
    while not stopping.wait(0.5):
        pass
