"""The shared skeleton of the sandbox emulators: a threaded stdlib HTTP server, the request log,
injectable faults, the `/__sandbox__/` inspection routes, seedable ids, method-and-path
routing, the command-line flags every emulator takes, and the background delivery workers
(retries on a compressed clock) that send webhooks.

Each emulator subclasses `Emulator` and supplies only its API: `handle_api`, how an injected
fault looks on its wire (`fault_response`), its state snapshot and its reset.
"""

from __future__ import annotations

import abc
import argparse
import json
import math
import random
import re
import string
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Self, TypedDict, TypeVar
from urllib.parse import parse_qsl, urlsplit

SANDBOX_PREFIX = "/__sandbox__/"
JSON_TYPE = "application/json"
# Input bounds: whatever a client sends, an emulator answers 4xx, never 5xx, in bounded time and
# memory (tests trust the emulators, so they are held to the bridge's standard).
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_NUMBER_DIGITS = 308  # beyond a double's range: JSON.parse would make it Infinity
MAX_ECHO_CHARS = 200  # how much of a client's path or value an answer or the log repeats

JsonObject = dict[str, Any]
Handler = TypeVar("Handler")


def utc_now_iso() -> str:
    """ISO 8601 with milliseconds and a `Z`, as both vendors print timestamps."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def compact_json(value: Any) -> bytes:
    """`JSON.stringify` bytes: no spaces, non-ASCII kept, key order kept (the signing form)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def clip(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`text` cut to `limit` characters (marked with …), for echoing client input."""
    return text if len(text) <= limit else text[:limit] + "…"


class BadJson(ValueError):
    """A body that is not JSON as the vendors' APIs accept it (the message says why)."""


def _refuse_constant(name: str) -> Any:
    raise BadJson(f"{name} is not JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise BadJson(f"number {clip(literal, 20)} is out of range")
    return value


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise BadJson(f"number {clip(literal, 20)} is out of range")
    return int(literal)


def _check_tree(value: Any) -> None:
    """Nesting depth and strings: a lone surrogate (`"\\ud800"`) cannot be stored or sent
    as UTF-8, so it is refused here rather than failing later on the way out."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise BadJson(f"nested deeper than {MAX_JSON_DEPTH} levels")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                if isinstance(key, str):
                    todo.append((key, depth))
                todo.append((child, depth + 1))
        elif isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise BadJson("a string holds a lone surrogate (not valid Unicode)") from None


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, strictly: UTF-8, no NaN/Infinity, no number beyond a double's
    range (`1e400`), no lone surrogate, at most `MAX_JSON_DEPTH` levels. Raises `BadJson`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadJson("the body is not UTF-8") from None
    try:
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except RecursionError:
        raise BadJson(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except BadJson:
        raise
    except ValueError as exc:
        raise BadJson(f"invalid JSON: {clip(str(exc))}") from None
    _check_tree(value)
    return value


@dataclass(frozen=True)
class HttpRequest:
    """One request as the emulator sees it; headers are case-insensitive (email.Message)."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Message
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        value = self.headers.get(name)
        return default if value is None else str(value)

    @property
    def content_type(self) -> str:
        return self.header("Content-Type").split(";")[0].strip().lower()

    def query_value(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def json_response(
    status: int, payload: Any, content_type: str = JSON_TYPE, headers: dict[str, str] | None = None
) -> HttpResponse:
    return HttpResponse(status, compact_json(payload), content_type, dict(headers or {}))


class ApiError(Exception):
    """Raised inside a handler to answer with a ready-made response."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response


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


class DeliveryOptions(TypedDict, total=False):
    """How an emulator retries its outbound webhooks (defaults: those of `Emulator`)."""

    delivery_attempts: int
    delivery_backoff_s: float
    delivery_timeout_s: float


def add_server_arguments(parser: argparse.ArgumentParser, seeded: str) -> None:
    """`--host`, `--port` and `--seed`: every emulator command starts with these."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
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
