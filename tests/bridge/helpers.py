"""Shared test helpers: fixture events, signed API Gateway requests, moto, a fake upstream."""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bridge_code.aws import AwsTarget
from bridge_code.delivery import DeliveryApp
from bridge_code.ingest import IngestApp
from bridge_code.ledger import Claim
from bridge_code.runtime import BridgeRuntime
from bridge_code.settings import BridgeSettings
from bridge_code.signatures import sign_segment, sign_userflow

EVENTS = Path(__file__).resolve().parent.parent / "events"
SHARED_SECRET = "seg-shared-secret-1"
WEBHOOK_SECRET = "uf-webhook-secret-1"
USERFLOW_KEY = "ak_test_key"
WRITE_KEY = "wk_test_key"
MOTO_TARGET = AwsTarget(region="us-east-1", access_key_id="testing",
                        secret_access_key="testing")


def load_event(name: str) -> Any:
    """A fixture event; Segment events are stamped as received by Segment just now, as a
    live delivery would be (the bridge refuses signed events older than its window)."""
    event = json.loads((EVENTS / name).read_text())
    if name.startswith("segment_"):
        event["receivedAt"] = now_iso()
    return event


def now_iso(offset_seconds: float = 0.0) -> str:
    moment = dt.datetime.fromtimestamp(time.time() + offset_seconds, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def apigw_event(method: str, path: str, body: bytes | None,
                headers: dict[str, str] | None = None,
                base64_encoded: bool = False) -> dict[str, Any]:
    """The API Gateway v2 fixture with this request's method, path, headers and body."""
    event: dict[str, Any] = copy.deepcopy(load_event("apigw_v2_request.json"))
    event["rawPath"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["headers"].update(headers or {})
    if body is not None:
        event["body"] = (base64.b64encode(body).decode() if base64_encoded
                         else body.decode("utf-8"))
        event["isBase64Encoded"] = base64_encoded
    return event


def function_url_event(method: str, path: str, body: bytes | None,
                       headers: dict[str, str] | None = None,
                       base64_encoded: bool = False) -> dict[str, Any]:
    """The Lambda function URL fixture (payload 2.0, routeKey $default, the URL's own host)
    with this request's method, path, headers and body."""
    event: dict[str, Any] = copy.deepcopy(load_event("function_url_request.json"))
    event["rawPath"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["headers"].update(headers or {})
    event["body"] = None
    if body is not None:
        event["body"] = (base64.b64encode(body).decode() if base64_encoded
                         else body.decode("utf-8"))
        event["headers"]["content-length"] = str(len(body))
    event["isBase64Encoded"] = base64_encoded and body is not None
    return event


def segment_request(payload: Any, secret: str = SHARED_SECRET,
                    base64_encoded: bool = False) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    return apigw_event("POST", "/segment", body, {"x-signature": sign_segment(body, secret)},
                       base64_encoded)


def userflow_request(payload: Any, secret: str = WEBHOOK_SECRET,
                     timestamp: int | None = None) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    header = sign_userflow(body, secret, int(time.time()) if timestamp is None else timestamp)
    return apigw_event("POST", "/userflow", body, {"userflow-signature": header})


def answer(result: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return int(result["statusCode"]), json.loads(result["body"])


@dataclass
class Bridge:
    """A bridge wired to moto (inside mock_aws) with both directions configured."""

    runtime: BridgeRuntime
    ingest: IngestApp
    delivery: DeliveryApp

    @property
    def sqs(self) -> Any:
        return self.runtime.aws.sqs

    def pump(self, max_polls: int = 60, budget_seconds: float = 30.0) -> int:
        """Run the delivery handler over the queue until it is empty (bounded)."""
        from sandbox.local_bridge import deliver_once

        settings = self.runtime.settings
        assert settings.queue_url is not None
        handled = 0
        for _ in range(max_polls):
            n = deliver_once(self.sqs, settings.queue_url, "arn:aws:sqs:us-east-1:1:q",
                             self.delivery, wait_seconds=0, budget_seconds=budget_seconds)
            handled += n
            if n == 0 and self.queue_depth(settings.queue_url) == 0:
                return handled
        raise AssertionError(f"queue not drained after {max_polls} polls")

    def queue_depth(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return (int(attributes["ApproximateNumberOfMessages"])
                + int(attributes["ApproximateNumberOfMessagesNotVisible"]))

    def dead_letters(self) -> list[dict[str, Any]]:
        settings = self.runtime.settings
        reply = self.sqs.receive_message(QueueUrl=settings.dead_letter_queue_url,
                                         MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                         VisibilityTimeout=0)
        return list(reply.get("Messages", []))

    def with_settings(self, **changes: Any) -> Bridge:
        """The same queues and secrets, another delivery configuration (a fixed cause)."""
        runtime = replace(self.runtime, settings=replace(self.runtime.settings, **changes))
        return Bridge(runtime, IngestApp(runtime), DeliveryApp(runtime))


def make_bridge(upstream_url: str = "http://127.0.0.1:9", *, configure_userflow: bool = True,
                configure_segment: bool = True, **tuning: Any) -> Bridge:
    """Queues and secrets in moto (call inside mock_aws) and the apps over them."""
    from sandbox.local_bridge import create_ledger_table

    base = BridgeRuntime.build(BridgeSettings(), MOTO_TARGET).aws
    sqs, sm = base.sqs, base.secretsmanager
    ledger_table = create_ledger_table(base.dynamodb, "bridge-ledger")
    dlq = sqs.create_queue(QueueName="bridge-dlq")["QueueUrl"]
    queue = sqs.create_queue(QueueName="bridge", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]

    def secret(name: str, value: str) -> str:
        return str(sm.create_secret(Name=name, SecretString=value)["ARN"])

    settings = BridgeSettings(
        queue_url=queue, dead_letter_queue_url=dlq, ledger_table=ledger_table,
        segment_shared_secret_arn=secret("shared", SHARED_SECRET) if configure_userflow else None,
        userflow_api_key_arn=secret("uf-key", USERFLOW_KEY) if configure_userflow else None,
        userflow_webhook_secret_arn=secret("webhook", WEBHOOK_SECRET) if configure_segment
        else None,
        segment_write_key_arn=secret("write-key", WRITE_KEY) if configure_segment else None,
        userflow_api_url=upstream_url, segment_tracking_url=upstream_url,
        upstream_timeout_seconds=tuning.pop("upstream_timeout_seconds", 1.0),
        max_attempts=tuning.pop("max_attempts", 3),
        backoff_base_seconds=tuning.pop("backoff_base_seconds", 0.01),
        backoff_cap_seconds=tuning.pop("backoff_cap_seconds", 0.05),
        poison_receive_count=tuning.pop("poison_receive_count", 3),
        deadline_margin_seconds=0.1,
        **tuning,
    )
    runtime = BridgeRuntime.build(settings, MOTO_TARGET)
    return Bridge(runtime, IngestApp(runtime), DeliveryApp(runtime))


@dataclass
class Fault:
    """The next `count` requests whose path starts with `path_prefix` get this answer."""

    path_prefix: str
    count: int
    status: int = 500
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int


class FakeUpstream:
    """Userflow and Segment in one small HTTP server: records requests, injects faults."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.faults: list[Fault] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        original_verify = self.server.verify_request

        def counting_verify(request: Any, client_address: Any) -> bool:
            with self.lock:
                self.connections += 1
            return bool(original_verify(request, client_address))

        self.server.verify_request = counting_verify  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def delivered(self, path_prefix: str) -> list[Received]:
        """Requests that the upstream accepted (2xx), in arrival order."""
        with self.lock:
            return [r for r in self.received if r.path.startswith(path_prefix)
                    and 200 <= r.status < 300]

    def _take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if path.startswith(fault.path_prefix) and fault.count > 0:
                    fault.count -= 1
                    return fault
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                fault = upstream._take_fault(self.path)
                status = 200
                if fault is not None:
                    if fault.delay_s:
                        time.sleep(fault.delay_s)
                    status = fault.status
                body = json.loads(raw) if raw else None
                with upstream.lock:
                    upstream.received.append(Received(self.command, self.path,
                                                      dict(self.headers), body, status))
                payload = b'{"success":true}' if status < 300 else b'{"error":{"code":"x"}}'
                self.send_response(status)
                for key, value in (fault.headers if fault else {}).items():
                    self.send_header(key, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up (timeout test)
                    self.wfile.write(payload)

            do_POST = do_DELETE = do_GET = _any

        return Handler


def free_port() -> int:
    """A port with nothing listening (connection refused), for the refused-connection test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0,
             interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def iter_fixture_names(prefix: str) -> Iterator[str]:
    return (p.name for p in sorted(EVENTS.glob(f"{prefix}*.json")))


class MemoryLedger:
    """The ledger's semantics in a dict, for tests that stub AWS out (`Ledger` protocol)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.settled: dict[str, float] = {}  # holder -> expires_at
        self.clock = clock
        self.lock = threading.Lock()

    def _holder_settled(self, token: str) -> bool:
        return self.settled.get(token, -1.0) >= self.clock()

    def claim(self, kind: str, key: str, hold_seconds: float, keep_seconds: float,
              holder: str | None = None) -> Claim:
        pk, now = f"{kind}#{key}", self.clock()
        token = holder or f"t{len(self.items)}-{now}"
        with self.lock:
            old = self.items.get(pk)
            live = old is not None and old["expires_at"] >= now
            settled = (live and holder is not None and old is not None
                       and old["state"] == "pending" and self._holder_settled(old["token"]))
            if old is not None and live:
                if old["state"] == "done" or (settled and old["held_until"] >= now):
                    return Claim("done", pk, token)
                if old["state"] == "pending" and old["held_until"] >= now:
                    return Claim("busy", pk, token)
            self.items[pk] = {"state": "done" if settled else "pending", "token": token,
                              "held_until": now + hold_seconds, "expires_at": now + keep_seconds}
            if settled:
                return Claim("done", pk, token)
            return Claim("taken_over" if live else "claimed", pk, token)

    def complete(self, claim: Claim, keep_seconds: float) -> None:
        with self.lock:
            self.items[claim.key] = {"state": "done", "token": claim.token, "held_until": 0,
                                     "expires_at": self.clock() + keep_seconds}

    def settle(self, holder: str, keep_seconds: float) -> None:
        with self.lock:
            self.settled[holder] = self.clock() + keep_seconds

    def release(self, claim: Claim, uncertain: bool = False) -> None:
        with self.lock:
            item = self.items.get(claim.key)
            if item is None or item["token"] != claim.token or item["state"] != "pending":
                return
            if uncertain:
                item["state"] = "uncertain"
            else:
                del self.items[claim.key]
