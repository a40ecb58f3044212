"""The shared skeleton of the sandbox emulators: a threaded stdlib HTTP server, the request log,
injectable faults, the `/__sandbox__/` inspection routes, seedable ids, method-and-path
routing and the command-line flags every emulator takes. What goes over the wire (strict JSON,
requests, responses) is `sandbox/wire.py`; the background workers that send webhooks (retries
on a compressed clock) are `sandbox/outbound.py`.

Each emulator subclasses `Emulator` and supplies only its API: `handle_api`, how an injected
fault looks on its wire (`fault_response`), its state snapshot and its reset.
"""

from __future__ import annotations

import abc
import argparse
import random
import re
import string
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Self, TypedDict, TypeVar
from urllib.parse import parse_qsl, urlsplit

from sandbox.cli import add_listen_arguments
from sandbox.outbound import DeliveryWorkers, RetryPolicy
from sandbox.wire import (
    MAX_BODY_BYTES,
    ApiError,
    HttpRequest,
    HttpResponse,
    JsonObject,
    clip,
    json_response,
    parse_json,
    utc_now_iso,
)

SANDBOX_PREFIX = "/__sandbox__/"
Handler = TypeVar("Handler")


@dataclass
class Fault:
    """`POST /__sandbox__/faults`: the next `count` matching requests fail or are delayed."""

    path_prefix: str
    count: int
    status: int | None = None
    method: str | None = None
    retry_after: float | None = None
    delay_s: float = 0.0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        prefix = data.get("path_prefix")
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ValueError("path_prefix must be a path starting with '/'")
        status = data.get("status")
        if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
            raise ValueError("status must be an HTTP status code")
        delay = data.get("delay_s", 0.0)
        if status is None and not delay:
            raise ValueError("give a status, a delay_s, or both")
        count = data.get("count", 1)
        if not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        method = data.get("method")
        retry_after = data.get("retry_after")
        return cls(
            path_prefix=prefix,
            count=count,
            status=status,
            method=str(method).upper() if method else None,
            retry_after=float(retry_after) if retry_after is not None else None,
            delay_s=float(delay),
        )

    def matches(self, request: HttpRequest) -> bool:
        if self.method and self.method != request.method:
            return False
        return request.path.startswith(self.path_prefix)


class IdFactory:
    """Seedable ids and secrets: the same seed gives the same sequence, run after run.

    Sandbox values only, hence `random.Random` rather than `secrets`: determinism is the point.
    """

    ALPHABET = string.ascii_letters + string.digits

    def __init__(self, seed: int | None) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def reset(self) -> None:
        with self._lock:
            self._rng = random.Random(self._seed)

    def token(self, length: int, alphabet: str = ALPHABET) -> str:
        with self._lock:
            return "".join(self._rng.choice(alphabet) for _ in range(length))

    def hex(self, length: int) -> str:
        return self.token(length, "0123456789abcdef")


@dataclass(frozen=True)
class Route(Generic[Handler]):
    method: str
    template: str  # the API's path template, `{name}` standing for one path segment
    pattern: re.Pattern[str]
    handler: Handler


class NoRoute(Exception):
    """No route answers this request; `path_known` tells 405 (other methods exist) from 404."""

    def __init__(self, path_known: bool) -> None:
        super().__init__(path_known)
        self.path_known = path_known


class Router(Generic[Handler]):
    """Routes on method and path template; each emulator words the misses its own way."""

    def __init__(self) -> None:
        self.routes: list[Route[Handler]] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")
        self.routes.append(Route(method, template, pattern, handler))

    def match(self, request: HttpRequest) -> tuple[Route[Handler], dict[str, str]]:
        path_known = False
        for route in self.routes:
            found = route.pattern.match(request.path)
            if found is None:
                continue
            path_known = True
            if route.method == request.method:
                return route, found.groupdict()
        raise NoRoute(path_known)




class DeliveryOptions(TypedDict, total=False):
    """How an emulator retries its outbound webhooks (defaults: those of `Emulator`)."""

    delivery_attempts: int
    delivery_backoff_s: float
    delivery_timeout_s: float


def add_server_arguments(parser: argparse.ArgumentParser, seeded: str) -> None:
    """`--host`, `--port` and `--seed`: every emulator command starts with these."""
    add_listen_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help=f"seed of generated {seeded}")


def add_delivery_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--delivery-attempts", type=int, default=5,
                        help="tries per outbound webhook, the first included (default 5)")
    parser.add_argument("--delivery-backoff", type=float, default=0.2, help="first retry delay, s")
    parser.add_argument("--delivery-timeout", type=float, default=10.0,
                        help="seconds to wait for the receiver's answer per try; no answer "
                             "in time is retried (default 10)")


def delivery_options(args: argparse.Namespace) -> DeliveryOptions:
    """The `add_delivery_arguments` flags as the emulators' keyword arguments."""
    return DeliveryOptions(
        delivery_attempts=args.delivery_attempts,
        delivery_backoff_s=args.delivery_backoff,
        delivery_timeout_s=args.delivery_timeout,
    )


class Emulator(abc.ABC):
    """An in-memory API on 127.0.0.1 with the shared `/__sandbox__/` routes."""

    name: str = "emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int | None = 0,
        delivery_attempts: int = 5,
        delivery_backoff_s: float = 0.2,
        delivery_timeout_s: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.ids = IdFactory(seed)
        self.lock = threading.RLock()
        self.retry_policy = RetryPolicy(delivery_attempts, delivery_backoff_s, delivery_timeout_s)
        self.deliveries = DeliveryWorkers(self.retry_policy, self._record_delivery)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._faults: list[Fault] = []
        self._requests: list[JsonObject] = []
        self._delivery_log: list[JsonObject] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        if self.deliveries.stopped:  # restarted after stop(): fresh workers, same state
            self.deliveries = DeliveryWorkers(self.retry_policy, self._record_delivery)
        server = ThreadingHTTPServer((self.host, self.port), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        # A short poll interval makes `stop()` quick (the default 0.5 s adds up over a suite).
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-http",
            daemon=True,
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.deliveries.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def serve_until_interrupted(self) -> int:
        """The CLI's main loop: announce readiness on one stdout line, serve until Ctrl-C."""
        self.start()
        print(f"READY {self.name} {self.url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
        return 0

    # -- what subclasses provide ---------------------------------------------------------------

    @abc.abstractmethod
    def handle_api(self, request: HttpRequest) -> HttpResponse:
        """Answer one request of the emulated API."""

    @abc.abstractmethod
    def fault_response(self, fault: Fault, request: HttpRequest) -> HttpResponse:
        """An injected failure in this API's own error format."""

    @abc.abstractmethod
    def stored_state(self) -> JsonObject:
        """Everything the emulated API stores (a deep copy)."""

    @abc.abstractmethod
    def reset_state(self) -> None:
        """Forget everything stored (called with the lock held)."""

    def request_kind(self, request: HttpRequest) -> str:
        """A label for the request log (Segment tells its Public and Tracking APIs apart)."""
        return "api"

    def handle_sandbox_extra(self, request: HttpRequest, route: str) -> HttpResponse | None:
        """Emulator-specific `/__sandbox__/` routes; `None` when the route is not one."""
        return None

    # -- shared plumbing -----------------------------------------------------------------------

    def state(self) -> JsonObject:
        """`GET /__sandbox__/state`: what is stored, every delivery attempt, pending faults."""
        with self.lock:
            snapshot = self.stored_state()
            snapshot["deliveries"] = [dict(e) for e in self._delivery_log]
            snapshot["deliveries_pending"] = self.deliveries.pending
            snapshot["faults"] = [vars(f).copy() for f in self._faults]
        return snapshot

    def delivery_log(self) -> list[JsonObject]:
        with self.lock:
            return [dict(entry) for entry in self._delivery_log]

    def request_log(self, kind: str | None = None) -> list[JsonObject]:
        with self.lock:
            return [dict(e) for e in self._requests if kind is None or e["kind"] == kind]

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self._faults.append(fault)

    def reset(self) -> None:
        with self.lock:
            self._faults.clear()
            self._requests.clear()
            self._delivery_log.clear()
            self.ids.reset()
            self.reset_state()

    def _record_delivery(self, entry: JsonObject) -> None:
        with self.lock:
            self._delivery_log.append(entry)

    def _take_fault(self, request: HttpRequest) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.matches(request):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def dispatch(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(SANDBOX_PREFIX):
            return self._handle_sandbox(request)
        fault = self._take_fault(request)
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)
        try:
            if fault is not None and fault.status is not None:
                response = self.fault_response(fault, request)
            else:
                response = self.handle_api(request)
        except ApiError as exc:
            response = exc.response
        with self.lock:
            self._requests.append(
                {
                    "seq": len(self._requests) + 1,
                    "kind": self.request_kind(request),
                    "method": request.method,
                    "path": clip(request.path),
                    "query": [[clip(k), clip(v)] for k, v in request.query],
                    "status": response.status,
                    "at": utc_now_iso(),
                }
            )
        return response

    def _handle_sandbox(self, request: HttpRequest) -> HttpResponse:
        route = request.path[len(SANDBOX_PREFIX) :].rstrip("/")
        if request.method == "GET" and route == "state":
            return json_response(200, self.state())
        if request.method == "GET" and route == "requests":
            return json_response(200, {"requests": self.request_log(request.query_value("kind"))})
        if request.method == "POST" and route == "faults":
            try:
                data = parse_json(request.body or b"{}")
                faults = data if isinstance(data, list) else [data]
                parsed = [Fault.from_json(item) for item in faults]
            except (ValueError, TypeError, AttributeError) as exc:
                return json_response(400, {"error": f"bad fault: {exc}"})
            for fault in parsed:
                self.add_fault(fault)
            return json_response(200, {"faults": [vars(f).copy() for f in parsed]})
        if request.method == "POST" and route == "reset":
            self.reset()
            return json_response(200, {"reset": True})
        extra = self.handle_sandbox_extra(request, route)
        if extra is not None:
            return extra
        return json_response(
            404, {"error": f"no sandbox route {request.method} {clip(request.path)}"}
        )


def _make_handler(emulator: Emulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 keep-alive: clients with sessions (requests, the Segment library) reuse
        # connections, as they would against the real APIs.
        protocol_version = "HTTP/1.1"
        server_version = f"sandbox-{emulator.name}"
        sys_version = ""

        def _serve(self) -> None:
            framing = _framing_error(self.headers)
            if framing is not None:
                # The rest of the stream cannot be trusted: answer and close the connection.
                self.close_connection = True
                self._send(json_response(framing[0], {"error": framing[1]}))
                return
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            request = HttpRequest(
                method=self.command.upper(),
                path=parts.path,
                query=parse_qsl(parts.query, keep_blank_values=True),
                headers=self.headers,
                body=body,
            )
            try:
                response = emulator.dispatch(request)
            except Exception as exc:  # an emulator bug: answer loudly instead of hanging
                response = json_response(
                    500, {"error": f"emulator bug: {type(exc).__name__}: {clip(str(exc))}"}
                )
            self._send(response)

        def _send(self, response: HttpResponse) -> None:
            try:
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (a test's timeout against a delay fault): nothing to answer.
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the request log lives in `/__sandbox__/requests`, not on stderr."""

    return Handler


def _framing_error(headers: Message) -> tuple[int, str] | None:
    """(status, reason) when the request's body framing cannot be honoured, else None: a
    Content-Length that is not one non-negative integer, a body over `MAX_BODY_BYTES`, or a
    chunked body (which neither emulated API needs)."""
    if headers.get("Transfer-Encoding"):
        return 411, "Transfer-Encoding is not supported: send a Content-Length"
    lengths = headers.get_all("Content-Length") or []
    if not lengths:
        return None
    if len(set(lengths)) > 1 or not re.fullmatch(r"[0-9]{1,18}", lengths[0].strip()):
        return 400, f"bad Content-Length {clip(', '.join(lengths), 40)!r}"
    if int(lengths[0]) > MAX_BODY_BYTES:
        return 413, f"the body exceeds {MAX_BODY_BYTES // (1024 * 1024)} MB"
    return None
