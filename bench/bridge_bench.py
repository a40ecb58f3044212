"""Bridge benchmark: the five measurements of the bridge issue, printed as a table.

    .venv/bin/python bench/bridge_bench.py [--quick]

The machine is shared and noisy, so each figure is a ratio taken within one run (the bridge
next to the irreducible work on the same bytes, a batch next to one call), not an absolute.
SQS, Secrets Manager and the ledger's DynamoDB table are in-memory stubs here (their cost is
AWS's, not the bridge's; the ledger stub grants every claim, since each round sends the same
events again);
HTTP to the upstream is real, over 127.0.0.1. Measurement (1) is the process CPU of every
thread the bridge runs, twice: with the upstream call stubbed (the bridge's own code) and with
real calls to a fake upstream in a child process (the client side of each call is the
bridge's cost; the fake server's is not, so it runs outside the measured process).

    .venv/bin/python bench/bridge_bench.py --only-cpu     # measurement (1) alone
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bridge_code import logs  # noqa: E402
from bridge_code.aws import AwsClients  # noqa: E402
from bridge_code.delivery import DeliveryApp  # noqa: E402
from bridge_code.ingest import IngestApp  # noqa: E402
from bridge_code.ledger import Claim  # noqa: E402
from bridge_code.mapping import MappingConfig  # noqa: E402
from bridge_code.runtime import BridgeRuntime  # noqa: E402
from bridge_code.secret_store import SecretStore  # noqa: E402
from bridge_code.settings import BridgeSettings  # noqa: E402
from bridge_code.signatures import sign_segment, sign_userflow  # noqa: E402
from bridge_code.upstream import Outcome, UpstreamClient  # noqa: E402

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
    """The ledger's calls without DynamoDB: every claim is granted, nothing is kept."""

    def claim(self, kind: str, key: str, hold_seconds: float, keep_seconds: float) -> Claim:
        return Claim("claimed", f"{kind}#{key}", "bench")

    def complete(self, claim: Claim, keep_seconds: float) -> None:
        return None

    def release(self, claim: Claim, uncertain: bool = False) -> None:
        return None


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


class UpstreamProcess:
    """The same counting upstream in a child process (`--serve-upstream`): its server-side CPU
    is then not in this process's `process_time`, while the bridge's client side of every call
    (urllib3, the socket system calls) still is."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-upstream"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            raise RuntimeError("the upstream process did not start")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the child serves until its stdin closes
        self.process.wait(timeout=10)


def serve_upstream() -> int:
    upstream = Upstream()
    print(upstream.url, flush=True)
    sys.stdin.read()
    upstream.close()
    return 0


def runtime(upstream_url: str = "http://127.0.0.1:9") -> tuple[BridgeRuntime, StubAws]:
    aws = StubAws()
    arns = {name: name for name in SECRETS}
    settings = BridgeSettings(
        queue_url="stub://queue", dead_letter_queue_url="stub://dlq",
        segment_shared_secret_arn=arns["arn:shared"],
        userflow_webhook_secret_arn=arns["arn:webhook"],
        userflow_api_key_arn=arns["arn:uf-key"], segment_write_key_arn=arns["arn:write-key"],
        userflow_api_url=upstream_url, segment_tracking_url=upstream_url,
        ledger_table="stub", segment_batching=True)
    store = SecretStore(aws.secret_string, settings.secrets_ttl_seconds)
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


def segment_events(n: int) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    for i in range(n):
        event = fixture("segment_track.json")
        # received by Segment just now: older signed events are refused
        event.update(messageId=f"bench-{i}", userId=f"user-{i}", receivedAt=time.strftime(
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


# --- (1) CPU per event ------------------------------------------------------------------------

Request = tuple[bytes, dict[str, str]]


def batched(requests: list[Request], size: int) -> list[Request]:
    """Segment deliveries with batching on: arrays of `size` events, signed over the first."""
    out = []
    for start in range(0, len(requests), size):
        events = [json.loads(body) for body, _ in requests[start:start + size]]
        first = json.dumps(events[0], separators=(",", ":"), ensure_ascii=False).encode()
        out.append((json.dumps(events).encode(),
                    {"x-signature": sign_segment(first, SECRETS["arn:shared"])}))
    return out


def cpu_ratio(route: str, requests: list[tuple[bytes, dict[str, str]]],
              irreducible: Callable[[bytes], object], rounds: int,
              per_request: int = 1, http: bool = False) -> tuple[float, float, float]:
    """CPU per event of ingest + delivery, next to json parse + HMAC of the same events.

    `process_time` counts every thread of this process: the handlers and the delivery pool.
    Without `http` the upstream call is stubbed (the bridge's own code alone); with it, the
    calls go over 127.0.0.1 to an upstream in a child process, so the client side of each
    call is counted and the fake server's side is not.
    """
    server = UpstreamProcess() if http else None
    rt, aws = runtime(server.url if server else "http://127.0.0.1:9")
    ingest = IngestApp(rt)
    delivery = DeliveryApp(rt) if server else DeliveryApp(rt, upstream=InstantUpstream())
    baseline_requests = requests
    if per_request > 1:
        requests = batched(requests, per_request)
    events = [apigw(route, body, headers) for body, headers in requests]
    event_count = len(baseline_requests)

    def bridge_once() -> None:
        aws.sqs.bodies.clear()
        for event in events:
            assert ingest.handle(event)["statusCode"] == 200
        for start in range(0, len(aws.sqs.bodies), 10):
            result = delivery.handle(records(aws.sqs.bodies[start:start + 10]))
            assert result == {"batchItemFailures": []}

    def baseline_once() -> None:
        for body, _ in baseline_requests:
            irreducible(body)

    bridge_once()  # warm: secrets cached, pool threads started
    # Interleaved so both sides see the same machine; the least-disturbed round of each.
    # Many short rounds: on a shared machine other work only ever adds time, so the minimum
    # of many is the figure that repeats from run to run.
    bridge_samples, base_samples = [], []
    for _ in range(rounds * 4):
        bridge_samples.append(_cpu(bridge_once))
        base_samples.append(_cpu(baseline_once))
    bridge_cpu = min(bridge_samples) / event_count
    base_cpu = min(base_samples) / event_count
    delivery.close()
    if server:
        server.close()
    return bridge_cpu, base_cpu, bridge_cpu / base_cpu


def _cpu(work: Callable[[], None]) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


def segment_irreducible(body: bytes) -> object:
    hmac.new(SECRETS["arn:shared"].encode(), body, hashlib.sha1).hexdigest()
    return json.loads(body)


def userflow_irreducible(body: bytes) -> object:
    hmac.new(SECRETS["arn:webhook"].encode(), b"1700000000." + body,
             hashlib.sha256).hexdigest()
    return json.loads(body)


def design_floor(body: bytes) -> object:
    """What the required design cannot avoid per event, in C-speed primitives only: verify and
    parse at ingest, write the queue message, parse it at delivery, write the upstream body."""
    hmac.new(SECRETS["arn:shared"].encode(), body, hashlib.sha1).hexdigest()
    event = json.loads(body)
    message = json.dumps({"event": event})
    return json.dumps(json.loads(message)["event"])


# --- (2) batch of 10 against a 50 ms upstream ---------------------------------------------------

def batch_latency(direction: str, rounds: int) -> tuple[float, float, float]:
    upstream = Upstream(delay_s=0.05)
    rt, aws = runtime(upstream.url)
    ingest, delivery = IngestApp(rt), DeliveryApp(rt)
    if direction == "segment_to_userflow":
        route, requests, path = "/segment", segment_events(10), "/events"
    else:
        route, requests, path = "/userflow", userflow_events(10), "/v1/batch"
    for body, headers in requests:
        ingest.handle(apigw(route, body, headers))
    batch = records(list(aws.sqs.bodies))
    client = UpstreamClient(10.0, 1, 0.0, 0.0)
    single = []
    for _ in range(rounds):
        started = time.perf_counter()
        client.send("POST", upstream.url + path, {}, b"{}", time.monotonic() + 10)
        single.append(time.perf_counter() - started)
    delivery.handle(batch)  # warm: the pool's connections exist, as in a warm container
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        assert delivery.handle(batch) == {"batchItemFailures": []}
        times.append(time.perf_counter() - started)
    delivery.close()
    upstream.close()
    one, whole = statistics.median(single), statistics.median(times)
    return whole, one, whole / one


# --- (3) upstream calls per event, TCP connections per 1,000 events --------------------------

def calls_and_connections(direction: str, events: int = 1000) -> tuple[float, int, int]:
    upstream = Upstream()
    rt, aws = runtime(upstream.url)
    ingest, delivery = IngestApp(rt), DeliveryApp(rt)
    if direction == "segment_to_userflow":
        route, requests = "/segment", segment_events(events)
    else:
        route, requests = "/userflow", userflow_events(events)
    for body, headers in requests:
        ingest.handle(apigw(route, body, headers))
    bodies = list(aws.sqs.bodies)

    def run() -> None:
        for start in range(0, len(bodies), 10):
            assert delivery.handle(records(bodies[start:start + 10])) == {
                "batchItemFailures": []}

    run()
    cold_requests, cold_connections = upstream.requests, upstream.connections
    run()
    warm_connections = upstream.connections - cold_connections
    delivery.close()
    upstream.close()
    return cold_requests / events, cold_connections, warm_connections


# --- (4) cold import and package size --------------------------------------------------------

def package_files() -> dict[str, bytes]:
    files = {f"bridge_code/{p.name}": p.read_bytes()
             for p in sorted((ROOT / "bridge_code").glob("*.py"))}
    mapping = yaml.safe_load((ROOT / "bridge_code" / "mapping.yaml").read_text())
    files["bridge_code/mapping.json"] = (json.dumps(mapping, sort_keys=True, indent=2)
                                         + "\n").encode()
    return files


def zip_size(files: dict[str, bytes]) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name], compresslevel=9)
    return len(buffer.getvalue())


def cold_import_ms(module: str, rounds: int) -> float:
    """Import in a fresh interpreter from an unpacked zip (no .pyc: Lambda compiles them)."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in package_files().items():
            target = Path(tmp) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        code = (f"import sys, time; sys.path.insert(0, {tmp!r}); t = time.perf_counter(); "
                f"import {module}; print((time.perf_counter() - t) * 1000)")
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        samples = []
        for _ in range(rounds):
            shutil.rmtree(Path(tmp) / "bridge_code" / "__pycache__", ignore_errors=True)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env=env, check=True, cwd=tmp).stdout
            samples.append(float(out.strip()))
        # The least-disturbed run: other work on a shared machine only ever adds time.
        return min(samples)


# --- (5) Secrets Manager calls per 1,000 warm invocations --------------------------------------

def secret_calls(invocations: int = 1000) -> tuple[int, int]:
    rt, aws = runtime()
    ingest = IngestApp(rt)
    [(body, headers)] = segment_events(1)
    event = apigw("/segment", body, headers)
    ingest.handle(event)  # cold: the one fetch
    before = aws.secret_calls
    for _ in range(invocations):
        ingest.handle(event)
    warm = aws.secret_calls - before
    forged = apigw("/segment", body, {"x-signature": "0" * 40})
    before = aws.secret_calls
    for _ in range(invocations):
        assert ingest.handle(forged)["statusCode"] == 401
    return warm, aws.secret_calls - before


# --- the table ----------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--only-cpu", action="store_true", help="measurement (1) only")
    parser.add_argument("--serve-upstream", action="store_true",
                        help="internal: only serve the counting upstream (the bench runs "
                             "itself so in a child process: the upstream's CPU is not the "
                             "bridge's)")
    args = parser.parse_args(argv)
    if args.serve_upstream:
        return serve_upstream()
    rounds = 2 if args.quick else 5
    logs.use_stream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    rows: list[tuple[str, str, str]] = []

    for http in (False, True):
        for label, route, make, base, per_request in (
                ("Segment→Userflow, 1 event/request", "/segment", segment_events,
                 segment_irreducible, 1),
                ("Segment→Userflow, batches of 20", "/segment", segment_events,
                 segment_irreducible, 20),
                ("Userflow→Segment, 1 event/request", "/userflow", userflow_events,
                 userflow_irreducible, 1)):
            bridge_cpu, base_cpu, ratio = cpu_ratio(route, make(400), base, rounds,
                                                    per_request, http)
            how = ("incl. HTTP client, upstream in another process" if http
                   else "upstream call stubbed")
            rows.append((f"(1) CPU/event vs json parse+HMAC, {label}, {how}",
                         f"{bridge_cpu * 1e6:.0f} µs vs {base_cpu * 1e6:.1f} µs = {ratio:.1f}x",
                         "≤ 5x"))
    bridge_cpu, floor_cpu, ratio = cpu_ratio("/segment", segment_events(400), design_floor,
                                             rounds)
    rows.append(("(1) same, Segment→Userflow 1 event/request, vs the queue design's floor",
                 f"{bridge_cpu * 1e6:.0f} µs vs {floor_cpu * 1e6:.1f} µs = {ratio:.1f}x",
                 "(info)"))
    if args.only_cpu:
        _print(rows)
        return 0
    for direction, label in (("segment_to_userflow", "Segment→Userflow (10 parallel calls)"),
                             ("userflow_to_segment", "Userflow→Segment (1 batch call)")):
        whole, one, ratio = batch_latency(direction, rounds)
        rows.append((f"(2) SQS batch of 10, 50 ms upstream, {label}",
                     f"{whole * 1000:.0f} ms / {one * 1000:.0f} ms = {ratio:.2f}x", "≤ 2x"))
    for direction, label in (("segment_to_userflow", "Segment→Userflow"),
                             ("userflow_to_segment", "Userflow→Segment")):
        per_event, cold, warm = calls_and_connections(direction)
        aim = "≤ 0.1" if direction == "userflow_to_segment" else "1 (no batch API)"
        rows.append((f"(3) upstream calls per event, {label}", f"{per_event:.2f}", aim))
        rows.append((f"(3) TCP connections per 1,000 events, {label}",
                     f"{cold} (fresh container), {warm} (next 1,000)", "≤ 2"))
    for module, label in (
            ("bridge_code.ingest", "bridge_code.ingest"),
            ("bridge_code.delivery", "bridge_code.delivery"),
            ("boto3", "boto3 alone (runtime's; paid at the first AWS call)"),
            ("bridge_code.delivery, boto3, urllib3",
             "delivery + boto3 + urllib3 (whole cold start)")):
        aim = "≤ 150 ms" if module.startswith("bridge_code") and "," not in module else "(info)"
        rows.append((f"(4) cold import {label}", f"{cold_import_ms(module, rounds):.0f} ms", aim))
    size = zip_size(package_files())
    rows.append(("(4) zipped package (bridge_code/*.py + mapping.json)",
                 f"{size / 1024:.1f} KiB", "≤ 2 MB"))
    warm, forged = secret_calls()
    rows.append(("(5) Secrets Manager calls per 1,000 warm invocations",
                 f"{warm} (valid), {forged} (forged signatures)", "≤ 1"))

    _print(rows)
    return 0


def _print(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"{'measurement':<{width}}  {'result':<{value_width}}  aim")
    print(f"{'-' * width}  {'-' * value_width}  {'-' * 16}")
    for name, value, aim in rows:
        print(f"{name:<{width}}  {value:<{value_width}}  {aim}")
    print(f"\nPython {sys.version.split()[0]} on {os.cpu_count()} CPU(s); SQS/Secrets Manager "
          "stubbed in memory; upstream over 127.0.0.1. (1): process CPU of the bridge's "
          "threads; 'HTTP client' rows run the fake upstream in a child process, so its "
          "server-side CPU is not counted.")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
