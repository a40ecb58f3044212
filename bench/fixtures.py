"""The bench's stand-ins: SQS, AWS and ledger stubs, a real local upstream, and the requests
it sends."""

from __future__ import annotations

import json
import multiprocessing
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

from bridge_code.aws import AwsClients
from bridge_code.ledger import Claim
from bridge_code.mapping import MappingConfig
from bridge_code.runtime import BridgeRuntime
from bridge_code.secret_store import SecretStore
from bridge_code.settings import BridgeSettings
from bridge_code.signatures import sign_segment, sign_userflow
from bridge_code.upstream import Outcome, UpstreamClient

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "tests" / "events"
SECRETS = {"arn:shared": "bench-shared", "arn:webhook": "bench-webhook",
           "arn:uf-key": "ak_bench", "arn:write-key": "wk_bench"}


# --- stubs and a real local upstream --------------------------------------------------------

class StubSqs:
    """SendMessageBatch/SendMessage kept in memory."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.bodies += [entry["MessageBody"] for entry in Entries]
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries], "Failed": []}

    def send_message(self, QueueUrl: str, MessageBody: str, **_: Any) -> dict[str, Any]:
        self.bodies.append(MessageBody)
        return {"MessageId": "dlq"}


class StubAws:
    def __init__(self) -> None:
        self.sqs = StubSqs()
        self.secret_calls = 0

    def secret_string(self, secret_id: str) -> str:
        self.secret_calls += 1
        return SECRETS[secret_id]


class GrantingLedger:
    """The ledger's calls without DynamoDB: every claim is granted, nothing is kept, and each
    call that DynamoLedger makes as one write (every item is under 1 KB: one write unit) is
    counted, so that the cost model's writes per event are the code's own."""

    def __init__(self) -> None:
        self.writes = 0

    def claim(self, kind: str, key: str, hold_seconds: float, keep_seconds: float,
              holder: str | None = None) -> Claim:
        self.writes += 1
        return Claim("claimed", f"{kind}#{key}", holder or "bench")

    def complete(self, claim: Claim, keep_seconds: float) -> None:
        self.writes += 1

    def release(self, claim: Claim, uncertain: bool = False) -> None:
        self.writes += 1

    def settle(self, holder: str, keep_seconds: float) -> None:
        self.writes += 1


def _serve_upstream(delay_s: float, urls: Any) -> None:
    urls.put(Upstream(delay_s).url)
    threading.Event().wait()  # until the parent kills this process


class SeparateUpstream:
    """`Upstream` in a child process, as Userflow and Segment are outside the bridge's: its
    threads then take no CPU or GIL from the bridge's own while a latency is measured."""

    def __init__(self, delay_s: float = 0.0) -> None:
        context = multiprocessing.get_context("fork")
        urls = context.SimpleQueue()
        self.process = context.Process(target=_serve_upstream, args=(delay_s, urls),
                                       daemon=True)
        self.process.start()
        self.url: str = urls.get()

    def close(self) -> None:
        self.process.kill()
        self.process.join(timeout=10)


class InstantUpstream(UpstreamClient):
    """Answers 200 at once: what is left is the bridge's own CPU."""

    def __init__(self) -> None:
        super().__init__(1.0, 1, 0.0, 0.0)

    def send(self, method: str, url: str, headers: Any, body: bytes | None,
             deadline: float) -> Outcome:
        return Outcome(True, False, 200, "HTTP 200", 1)


class Upstream:
    """A local HTTP server answering 200 after `delay_s`, counting requests and connections."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.requests = 0
        self.connections = 0
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle's algorithm and
                # the client's delayed ACK add ~40 ms to every call and hide the real latency.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                if upstream.delay_s:
                    time.sleep(upstream.delay_s)
                with upstream.lock:
                    upstream.requests += 1
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        class CountingServer(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 64

            def verify_request(self, request: Any, client_address: Any) -> bool:
                with upstream.lock:
                    upstream.connections += 1  # one accepted TCP connection
                return True

        self.server = CountingServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def runtime(upstream_url: str = "http://127.0.0.1:9",
            clock: Callable[[], float] = time.monotonic) -> tuple[BridgeRuntime, StubAws]:
    aws = StubAws()
    arns = {name: name for name in SECRETS}
    settings = BridgeSettings(
        queue_url="stub://queue", dead_letter_queue_url="stub://dlq",
        segment_shared_secret_arn=arns["arn:shared"],
        userflow_webhook_secret_arn=arns["arn:webhook"],
        userflow_api_key_arn=arns["arn:uf-key"], segment_write_key_arn=arns["arn:write-key"],
        userflow_api_url=upstream_url, segment_tracking_url=upstream_url,
        ledger_table="stub", segment_batching=True)
    store = SecretStore(aws.secret_string, settings.secrets_ttl_seconds, clock=clock)
    return BridgeRuntime(settings, cast(AwsClients, aws), store, MappingConfig(),
                         ledger=GrantingLedger()), aws


def fixture(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())


def apigw(path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """An API Gateway v2 event shaped like a real one: the headers a Segment or Userflow
    delivery arrives with (the handler lower-cases every one of them)."""
    sent = {"content-type": "application/json", "user-agent": "Segment (Actions)",
            "host": "abc123.execute-api.eu-west-1.amazonaws.com",
            "content-length": str(len(body)), "x-forwarded-for": "54.0.0.1",
            "x-forwarded-port": "443", "x-forwarded-proto": "https",
            "x-amzn-trace-id": "Root=1-65f1a2b3-0123456789abcdef01234567", **headers}
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": sent,
            "requestContext": {"accountId": "123456789012", "apiId": "abc123",
                               "http": {"method": "POST", "path": path,
                                        "protocol": "HTTP/1.1", "sourceIp": "54.0.0.1"},
                               "requestId": "JKJaXmPLvHcESHA=", "routeKey": "$default",
                               "stage": "$default", "timeEpoch": 1741608000000},
            "body": body.decode(), "isBase64Encoded": False}


def records(bodies: list[str]) -> dict[str, Any]:
    return {"Records": [{"messageId": f"m{i}", "body": body,
                         "attributes": {"ApproximateReceiveCount": "1"}}
                        for i, body in enumerate(bodies)]}


def segment_events(n: int, prefix: str = "") -> list[tuple[bytes, dict[str, str]]]:
    out = []
    for i in range(n):
        event = fixture("segment_track.json")
        # received by Segment just now: older signed events are refused
        event.update(messageId=f"bench-{prefix}{i}", userId=f"user-{i}", receivedAt=time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        body = json.dumps(event).encode()
        out.append((body, {"x-signature": sign_segment(body, SECRETS["arn:shared"])}))
    return out


def userflow_events(n: int) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    now = int(time.time())
    for i in range(n):
        event = fixture("userflow_event_tracked.json")
        event["id"] = f"wn_bench_{i}"
        body = json.dumps(event).encode()
        out.append((body, {"userflow-signature": sign_userflow(body, SECRETS["arn:webhook"],
                                                               now)}))
    return out


