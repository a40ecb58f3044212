"""Fixtures for the provider tests: one in-process emulator of each API per module, reset per
test, and providers configured the way the engine configures them (a ConfigureRequest holding
the stack config)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import dill
import pytest
import requests
from pulumi.dynamic import Config, ConfigureRequest

from components.api_http import RetryPolicy
from components.provider import ConfiguredProvider
from sandbox.segment import SegmentEmulator
from sandbox.userflow import UserflowEmulator

SEGMENT_TOKEN = "sandbox-segment-token"
SEGMENT_TOKEN_NOADMIN = "sandbox-segment-token-noadmin"
USERFLOW_KEY = "ak_sandbox_local"
# Fast retries: the emulators' injected 429s ask for tens of milliseconds.
FAST_RETRIES = RetryPolicy(max_attempts=6, max_wait_s=0.2, base_backoff_s=0.01, timeout_s=5.0)

P = TypeVar("P", bound=ConfiguredProvider[Any])


@dataclass
class Sandbox:
    """The inspection endpoints of one emulator (docs/ARCHITECTURE.md)."""

    url: str

    def state(self) -> dict[str, Any]:
        response = requests.get(f"{self.url}/__sandbox__/state", timeout=5)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def requests(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.url}/__sandbox__/requests", timeout=5)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["requests"]
        return result

    def api_calls(self) -> int:
        """Calls to the emulated API itself (the inspection routes are not logged)."""
        return len([r for r in self.requests() if r["kind"] != "tracking"])

    def fault(self, **fault: Any) -> None:
        response = requests.post(f"{self.url}/__sandbox__/faults", json=fault, timeout=5)
        response.raise_for_status()

    def reset(self) -> None:
        requests.post(f"{self.url}/__sandbox__/reset", timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def segment_emulator() -> Iterator[SegmentEmulator]:
    with SegmentEmulator(port=0) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def userflow_emulator() -> Iterator[UserflowEmulator]:
    with UserflowEmulator(port=0) as emulator:
        yield emulator


@pytest.fixture
def segment(segment_emulator: SegmentEmulator) -> Sandbox:
    sandbox = Sandbox(segment_emulator.url)
    sandbox.reset()
    return sandbox


@pytest.fixture
def userflow(userflow_emulator: UserflowEmulator) -> Sandbox:
    sandbox = Sandbox(userflow_emulator.url)
    sandbox.reset()
    return sandbox


def stack_config(**values: str) -> ConfigureRequest:
    """A ConfigureRequest as pulumi/dynamic/__main__.py builds it: namespaced keys."""
    raw = {f"userflow-segment:{key}": value for key, value in values.items()}
    return ConfigureRequest(Config(raw_config=raw, project_name="userflow-segment"))


def configured(provider: P, **config: str) -> P:
    provider.configure(stack_config(**config))
    return provider


def segment_api(sandbox: Sandbox, method: str, path: str, body: Any = None) -> Any:
    """An out-of-band change, made the way a person in the Segment app would (same API)."""
    media = (
        "application/vnd.segment.v1alpha+json"
        if "/subscriptions" in path
        else "application/vnd.segment.v1+json"
    )
    headers = {"Authorization": f"Bearer {SEGMENT_TOKEN}", "Accept": media}
    if body is not None:
        headers["Content-Type"] = media
    response = requests.request(method, sandbox.url + path, json=body, headers=headers, timeout=5)
    assert response.status_code < 300, response.text
    return response.json()


def userflow_api(sandbox: Sandbox, method: str, path: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {USERFLOW_KEY}", "Userflow-Version": "2020-01-03"}
    response = requests.request(method, sandbox.url + path, json=body, headers=headers, timeout=5)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def unpickle(raw: bytes) -> Any:
    """Load a pickled provider as the engine's dynamic provider host does (dill)."""
    return dill.loads(raw)  # noqa: S301 - bytes these tests pickled themselves


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


class BridgeStandIn:
    """Where the emulators deliver webhooks in these tests: records them, answers 200.

    It plays the bridge's endpoint only, to see what the resources made Segment and Userflow
    send; the Segment and Userflow sides are always the real emulators.
    """

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._arrived = threading.Condition()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with stand_in._arrived:
                    stand_in.deliveries.append(Delivery(self.path, dict(self.headers), body))
                    stand_in._arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while len(self.deliveries) < count and time.monotonic() < deadline:
                self._arrived.wait(timeout=max(0.0, deadline - time.monotonic()))
            return list(self.deliveries)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def bridge() -> Iterator[BridgeStandIn]:
    stand_in = BridgeStandIn()
    yield stand_in
    stand_in.stop()
