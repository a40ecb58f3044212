"""Bridge benchmark: every figure of the performance issue, with its goal, then the AWS cost
per million events per direction computed from the stacks' own config.

    make bench            # or: .venv/bin/python bench/bridge_bench.py [--quick]

The machine is shared and noisy, so the CPU figures are ratios taken within one run, round
by round (the bridge next to json.loads + HMAC of the same bytes), printed as min/median/max.
SQS, Secrets Manager, the ledger's table and the upstream are stubs in (1); (2) runs the real
boto3 SQS client against moto's server in a child process; (3), (4) and (6) use real HTTP
over 127.0.0.1. The cost model and its list prices: bench/cost_model.py.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import io
import json
import math
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench.cost_model import LOG_EVENT_OVERHEAD_BYTES, stack_config  # noqa: E402
from bench.cost_report import print_costs  # noqa: E402
from bench.fixtures import (  # noqa: E402
    SECRETS,
    GrantingLedger,
    InstantUpstream,
    SeparateUpstream,
    StubAws,
    Upstream,
    apigw,
    records,
    runtime,
    segment_events,
    userflow_events,
)
from bridge_code import logs  # noqa: E402
from bridge_code.aws import AwsClients, AwsTarget  # noqa: E402
from bridge_code.delivery import DeliveryApp  # noqa: E402
from bridge_code.ingest import IngestApp  # noqa: E402
from bridge_code.metrics import SETTINGS_VARIABLE, measured  # noqa: E402
from bridge_code.signatures import sign_segment  # noqa: E402
from bridge_code.upstream import UpstreamClient  # noqa: E402
from components.aws.metrics import BridgeMetricsDefinition  # noqa: E402

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


class CountingStream(io.StringIO):
    """Where the bridge's log lines go during the bench: only their bytes are kept."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def write(self, text: str) -> int:
        # CloudWatch Logs bills each line's bytes plus a fixed overhead per log event.
        self.bytes += len(text.encode("utf-8")) + text.count("\n") * LOG_EVENT_OVERHEAD_BYTES
        return len(text)


@dataclass
class CpuRun:
    ratios: list[float]
    ingest_cpu_per_request: float
    delivery_cpu_per_event: float
    message_bytes_per_event: float
    events_per_message: float
    ingest_log_bytes_per_request: float
    delivery_log_bytes_per_invocation: float
    ledger_writes_per_event: float


def cpu_run(route: str, requests: list[Request], irreducible: Callable[[bytes], object],
            rounds: int, per_request: int, delivery_batch: int) -> CpuRun:
    """CPU per event of ingest + delivery (SQS, ledger and upstream stubbed), next to json
    parse + HMAC of the same events, round by round (interleaved: both see the same machine).

    `process_time` counts every thread of this process: the handlers and the delivery pool.
    Handlers run through `measured`, as on Lambda, so the EMF lines are paid and counted.
    """
    rt, aws = runtime()
    ledger = cast(GrantingLedger, rt.ledger)
    ingest, delivery = IngestApp(rt), DeliveryApp(rt, upstream=InstantUpstream())
    baseline_requests = requests
    if per_request > 1:
        requests = batched(requests, per_request)
    events = [apigw(route, body, headers) for body, headers in requests]
    event_count = len(baseline_requests)
    stream = CountingStream()
    logs.use_stream(stream)
    split: dict[str, float] = {}

    def bridge_once() -> None:
        aws.sqs.bodies.clear()
        ledger.writes = 0
        started = time.process_time()
        for event in events:
            assert measured(rt.stats, ingest.handle, event, None)["statusCode"] == 200
        split["ingest"] = time.process_time() - started
        split["messages"] = len(aws.sqs.bodies)
        split["message_bytes"] = sum(len(b.encode()) for b in aws.sqs.bodies)
        split["ingest_logs"] = stream.bytes
        started = time.process_time()
        for start in range(0, len(aws.sqs.bodies), delivery_batch):
            result = measured(rt.stats, delivery.handle,
                              records(aws.sqs.bodies[start:start + delivery_batch]), None)
            assert result == {"batchItemFailures": []}
        split["invocations"] = math.ceil(len(aws.sqs.bodies) / delivery_batch)
        split["delivery"] = time.process_time() - started
        split["delivery_logs"] = stream.bytes - split["ingest_logs"]
        split["ledger_writes"] = ledger.writes
        stream.bytes = 0

    def baseline_once() -> None:
        for body, _ in baseline_requests:
            irreducible(body)

    bridge_once()  # warm: secrets cached, pool threads started
    # Many short rounds, interleaved; on a shared machine other work only ever adds time.
    ratios, ingest_cpu, delivery_cpu = [], [], []
    for _ in range(rounds * 4):
        bridge = _cpu(bridge_once)
        ingest_cpu.append(split["ingest"])
        delivery_cpu.append(split["delivery"])
        ratios.append(bridge / _cpu(baseline_once))
    delivery.close()
    logs.use_stream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    return CpuRun(ratios, min(ingest_cpu) / len(events), min(delivery_cpu) / event_count,
                  split["message_bytes"] / event_count, event_count / split["messages"],
                  split["ingest_logs"] / len(events),
                  split["delivery_logs"] / split["invocations"],
                  split["ledger_writes"] / event_count)


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


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """min / median / max."""
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values),
                                            max(values)))


# --- (2) boto3's SQS client, for real, against moto in another process ------------------------

class MotoProcess:
    """moto's server in a child process: its CPU is not in this process's `process_time`,
    the whole botocore client path (serialize, sign, HTTP, parse) is."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1",
             "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def sqs_client_cpu(moto: MotoProcess, route: str, requests: list[Request], per_request: int,
                   rounds: int) -> list[float]:
    """CPU per event of ingest with the real boto3 SQS client minus the same with the stub,
    round by round: what the SQS client costs per event."""
    rt, stub = runtime()
    clients = AwsClients(AwsTarget(endpoint_url=moto.url, region="us-east-1",
                                   access_key_id="bench", secret_access_key="bench"))  # noqa: S106
    queue_url = clients.sqs.create_queue(QueueName="bench")["QueueUrl"]
    real = replace(rt, aws=cast(AwsClients, RealSqs(clients, stub)),
                   settings=replace(rt.settings, queue_url=queue_url))
    if per_request > 1:
        requests = batched(requests, per_request)
    events = [apigw(route, body, headers) for body, headers in requests]
    stubbed_app, real_app = IngestApp(rt), IngestApp(real)

    def run(app: IngestApp) -> Callable[[], None]:
        def once() -> None:
            for event in events:
                assert app.handle(event)["statusCode"] == 200
        return once

    run(real_app)()  # warm: the client and its connection exist
    per_event = []
    for _ in range(rounds * 2):
        with_client, without = _cpu(run(real_app)), _cpu(run(stubbed_app))
        per_event.append((with_client - without) / (len(events) * per_request))
    return per_event


class RealSqs:
    """Real SQS (boto3 against moto); secrets still from the stub."""

    def __init__(self, clients: AwsClients, stub: StubAws) -> None:
        self.sqs = clients.sqs
        self._stub = stub

    def secret_string(self, secret_id: str) -> str:
        return self._stub.secret_string(secret_id)


# --- (3) a batch against a 50 ms upstream, (4) connections ------------------------------------

def batch_latency(direction: str, batch: int, rounds: int) -> list[float]:
    """Per round: one delivery invocation of `batch` queued events ÷ one upstream call. The
    upstream runs in its own process: in the same one, its 25 threads would contend with the
    bridge's for the GIL, a cost no real upstream puts on the bridge."""
    upstream = SeparateUpstream(delay_s=0.05)
    rt, aws = runtime(upstream.url)
    ingest, delivery = IngestApp(rt), DeliveryApp(rt)
    if direction == "segment_to_userflow":
        route, requests, path = "/segment", segment_events(batch), "/events"
    else:
        route, requests, path = "/userflow", userflow_events(batch), "/v1/batch"
    for body, headers in requests:
        ingest.handle(apigw(route, body, headers))
    messages = records(list(aws.sqs.bodies))
    client = UpstreamClient(10.0, 1, 0.0, 0.0)
    delivery.handle(messages)  # warm: the pool's connections exist, as in a warm container
    ratios = []
    for _ in range(rounds):
        started = time.perf_counter()
        client.send("POST", upstream.url + path, {}, b"{}", time.monotonic() + 10)
        one = time.perf_counter() - started
        started = time.perf_counter()
        assert delivery.handle(messages) == {"batchItemFailures": []}
        ratios.append((time.perf_counter() - started) / one)
    delivery.close()
    upstream.close()
    return ratios


def warm_connections(direction: str, batch: int, events: int = 1000) -> tuple[int, int]:
    """New TCP connections for `events` events delivered `batch` messages per invocation:
    in a fresh container, then in the same (warm) container for the next `events`."""
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
        for start in range(0, len(bodies), batch):
            assert delivery.handle(records(bodies[start:start + batch])) == {
                "batchItemFailures": []}

    run()
    cold = upstream.connections
    run()
    delivery.close()
    upstream.close()
    return cold, upstream.connections - cold


# --- (5) Secrets Manager calls driven by forged signatures --------------------------------------

def forged_secret_calls(invocations: int = 1000, interval_s: float = 10.0) -> tuple[int, float]:
    """Secrets Manager calls for `invocations` forged requests, one every `interval_s` (a
    simulated clock: 0.1 req/s over 10,000 s takes no real time)."""
    now = [0.0]
    rt, aws = runtime(clock=lambda: now[0])
    ingest = IngestApp(rt)
    [(body, _)] = segment_events(1)
    forged = apigw("/segment", body, {"x-signature": "0" * 40})
    assert ingest.handle(forged)["statusCode"] == 401  # the container's first fetch
    before = aws.secret_calls
    for _ in range(invocations):
        assert ingest.handle(forged)["statusCode"] == 401
        now[0] += interval_s
    return aws.secret_calls - before, invocations * interval_s


# --- (6) the local runner ------------------------------------------------------------------------

def local_runner(levels: tuple[int, ...], per_client: int) -> tuple[float, list[str]]:
    """Per client count: throughput, p50/p99 of the answer, connection errors (signed single
    Segment events, the ledger's path); then seconds to ingest one 1,000-event batch."""
    from sandbox.local_bridge import LocalBridge

    upstream = Upstream()
    env = {"USERFLOW_API_URL": upstream.url, "SEGMENT_TRACKING_URL": upstream.url,
           "USERFLOW_API_KEY": "ak_bench", "SEGMENT_WRITE_KEY": "wk_bench",
           "SEGMENT_SHARED_SECRET": SECRETS["arn:shared"],
           "USERFLOW_WEBHOOK_SECRET": SECRETS["arn:webhook"], "BRIDGE_SEGMENT_BATCHING": "true"}
    rows = []
    with LocalBridge(env=env) as bridge:
        logs.use_stream(open(os.devnull, "w"))  # noqa: SIM115 - the runner chose stderr
        for clients in levels:
            _drained(bridge)  # each level alone: no earlier level's deliveries running
            requests = segment_events(clients * per_client, prefix=f"c{clients}-")
            latencies, errors, elapsed = _load(bridge.url + "/segment", clients, requests)
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            rows.append(f"{clients} clients: {len(requests) / elapsed:.0f} req/s, p50 "
                        f"{statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
                        f"{errors} errors")
        _drained(bridge)
        small = [{"type": "identify", "messageId": f"big-{i}", "userId": f"u-{i}",
                  "receivedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "traits": {"plan": "pro"}} for i in range(1000)]
        [(body, headers)] = batched([(json.dumps(e).encode(), {}) for e in small], 1000)
        started = time.perf_counter()
        status = _post(bridge.url + "/segment", body, headers)
        big = time.perf_counter() - started
        assert status == 200, status
    upstream.close()
    return big, rows


def _drained(bridge: Any, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while bridge.stats()["queues"]["queue"] and time.monotonic() < deadline:
        time.sleep(0.2)


def _load(url: str, clients: int, requests: list[Request]) -> tuple[list[float], int, float]:
    """`clients` senders sharing `requests`: sorted latencies, errors, elapsed seconds."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def client(mine: list[Request]) -> None:
        nonlocal errors
        for body, headers in mine:
            started = time.perf_counter()
            try:
                ok = _post(url, body, headers) == 200
            except OSError:
                ok = False
            with lock:
                latencies.append(time.perf_counter() - started)
                errors += not ok

    threads = [threading.Thread(target=client, args=(requests[i::clients],))
               for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(latencies), errors, time.perf_counter() - started


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """One POST on its own connection, as separate senders make them."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        connection.request("POST", parts.path, body, {"content-type": "application/json",
                                                      **headers})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


# --- (4) cold import and package size --------------------------------------------------------

def package_files() -> dict[str, bytes]:
    files = {f"bridge_code/{p.name}": p.read_bytes()
             for p in sorted((ROOT / "bridge_code").glob("*.py"))}
    mapping = yaml.safe_load((ROOT / "bridge_code" / "mapping.yaml").read_text())
    files["bridge_code/mapping.json"] = (json.dumps(mapping, sort_keys=True, indent=2)
                                         + "\n").encode()
    files["bridge_code/VERSION"] = (ROOT / "VERSION").read_bytes()  # the package ships it
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


# --- the table ----------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else 5
    os.environ.setdefault(SETTINGS_VARIABLE, BridgeMetricsDefinition("bench").settings_json())
    logs.use_stream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    staging, production = stack_config("staging"), stack_config("production")
    batch = staging.segment_batch_size if staging.segment_batching else 1
    rows: list[tuple[str, str, str]] = []

    runs = {}
    for key, label, route, make, base, per_request in (
            ("s2u", f"Segment→Userflow, batches of {batch} (default config)", "/segment",
             segment_events, segment_irreducible, batch),
            ("s2u1", "Segment→Userflow, 1 event/request", "/segment", segment_events,
             segment_irreducible, 1),
            ("u2s", "Userflow→Segment, 1 event/request (one webhook per event)", "/userflow",
             userflow_events, userflow_irreducible, 1)):
        runs[key] = run = cpu_run(route, make(400), base, rounds, per_request,
                                  production.delivery_batch_size)
        rows.append((f"(1) CPU/event ingest+delivery ÷ json.loads+HMAC, {label}",
                     f"{spread(run.ratios)}x", "≤ 5x"))

    moto = MotoProcess()
    try:
        for label, route, make, per_request in (
                (f"Segment→Userflow, batches of {production.segment_batch_size} "
                 "(production)", "/segment", segment_events, production.segment_batch_size),
                ("Userflow→Segment, 1 event/request", "/userflow", userflow_events, 1)):
            per_event = sqs_client_cpu(moto, route, make(200), per_request, rounds)
            rows.append((f"(2) boto3 SQS client CPU per event, {label}",
                         f"{spread([v * 1e6 for v in per_event], '{:.0f}')} µs", "≤ 20 µs"))
    finally:
        moto.close()

    size = production.delivery_batch_size
    for direction, label in (("segment_to_userflow", "Segment→Userflow (parallel calls)"),
                             ("userflow_to_segment", "Userflow→Segment (one batch call)")):
        ratios = batch_latency(direction, size, rounds)
        rows.append((f"(3) SQS batch of {size} ÷ one call, 50 ms upstream, {label}",
                     f"{spread(ratios, '{:.2f}')}x", "≤ 1.2x"))
    for direction, label in (("segment_to_userflow", "Segment→Userflow"),
                             ("userflow_to_segment", "Userflow→Segment")):
        cold, warm = warm_connections(direction, size)
        rows.append((f"(4) new TCP connections per 1,000 events, batch {size}, {label}",
                     f"{warm} warm ({cold} in a fresh container)", "≤ 2"))

    calls, seconds = forged_secret_calls()
    rows.append(("(5) Secrets Manager calls, 1,000 forged signatures at 0.1 req/s",
                 f"{calls} in {seconds:,.0f} s = 1 per {seconds / max(calls, 1):.0f} s",
                 "≤ 1 per 300 s"))

    big, load = local_runner((1, 8, 32, 64), 2 if args.quick else 4)
    rows.append(("(6) local runner: one 1,000-event Segment batch", f"{big:.2f} s", "≤ 2 s"))
    for line in load:
        rows.append(("(6) local runner, signed Segment events", line, "0 errors at 64"))

    for module in ("bridge_code.ingest", "bridge_code.delivery"):
        rows.append((f"(7) cold import {module}",
                     f"{cold_import_ms(module, rounds):.0f} ms", "≤ 150 ms"))
    rows.append(("(7) zipped package", f"{zip_size(package_files()) / 1024:.1f} KiB",
                 "≤ 2 MB"))
    _print(rows)
    print()
    print_costs(staging, production, runs)
    return 0


def _print(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"{'figure (min/median/max where several rounds)':<{width}}  "
          f"{'result':<{value_width}}  goal")
    print(f"{'-' * width}  {'-' * value_width}  {'-' * 14}")
    for name, value, aim in rows:
        print(f"{name:<{width}}  {value:<{value_width}}  {aim}")
    print(f"\nPython {sys.version.split()[0]} on {os.cpu_count()} CPU(s). (1): process CPU of "
          "every bridge thread, SQS/ledger/upstream stubbed, ratio per interleaved round. "
          "(2): real boto3 against moto_server in a child process, minus the stubbed run.")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
