"""AWS cost per million events, per direction, from a stack's own config and list prices.

The config comes from the program itself (Pulumi.yaml defaults under Pulumi.<stack>.yaml, read
by components/config.py; the functions' memory from components/aws/functions.py); the
per-event measurements (CPU, message and log bytes) come from the bench. Every line printed
shows its arithmetic, so a reader can redo it with other prices or another config.

A direction's front door is API Gateway, or for Userflow's webhooks with `userflowIngress:
functionUrl` the ingest function's URL: no request charge beyond the Lambda invocation and no
access log line, and no API throttle in the capacity (ingest's reserved concurrency bounds it).

List prices: us-east-1, on-demand, as published on the pages in `PRICE_SOURCES` (DynamoDB's
after its November 2024 on-demand price cut); they are written here, not fetched, so check
them before relying on a total. Other regions cost somewhat more; free tiers are left out.

The ledger is priced as the stack bills it (`ledgerCapacity`): per write request on demand;
provisioned, per write capacity unit-hour kept at `ledgerTargetUtilization`, plus the
minimum capacity's monthly cost, paid whatever the traffic and stated apart from the
per-event total.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import pulumi
import yaml

from components.aws.functions import LOG_FORMAT, MEMORY_MB, SYSTEM_LOG_LEVEL
from components.config import SECRET_KEYS, StackConfig, parse_config
from components.project import UserflowIngress

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "userflow-segment:"

# USD. One place for every price the model uses.
API_PER_MILLION = 1.00  # HTTP API request (metered per 512 KB: a Segment batch is one)
LAMBDA_REQUEST_PER_MILLION = 0.20
LAMBDA_ARM_GB_SECOND = 0.0000133334  # the functions run on arm64
SQS_PER_MILLION = 0.40  # standard queue request; each 64 KiB of payload counts as one
LOGS_PER_GB = 0.50  # CloudWatch Logs ingestion (standard class)
DYNAMODB_WRITE_PER_MILLION = 0.625  # on-demand write request unit
DYNAMODB_WCU_HOUR = 0.00065  # provisioned write capacity unit, per hour
DYNAMODB_RCU_HOUR = 0.00013  # provisioned read capacity unit, per hour
PRICE_SOURCES = (
    "https://aws.amazon.com/api-gateway/pricing/",
    "https://aws.amazon.com/lambda/pricing/",
    "https://aws.amazon.com/sqs/pricing/",
    "https://aws.amazon.com/cloudwatch/pricing/",
    "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    "https://aws.amazon.com/dynamodb/pricing/provisioned/",
)
HOURS_PER_MONTH = 730  # AWS's monthly figures use 730 hours
SQS_CHUNK_BYTES = 64 * 1024
# Lambda's SQS poller receives and deletes up to 10 messages per request.
SQS_POLLER_MESSAGES_PER_CALL = 10
# CloudWatch Logs bills this much per log event on top of its bytes.
LOG_EVENT_OVERHEAD_BYTES = 26
# What Lambda itself writes per invocation when its system log level lets INFO records
# through (JSON format; the text format's START/END/REPORT lines are about as long), as
# these typical records. The functions' SYSTEM_LOG_LEVEL (components/aws/functions.py)
# decides whether they are billed.
PLATFORM_RECORDS = (
    '{"time":"2024-05-01T10:00:00.000Z","type":"platform.start","record":{"requestId":'
    '"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","version":"$LATEST"}}',
    '{"time":"2024-05-01T10:00:00.046Z","type":"platform.report","record":{"requestId":'
    '"6d68ca91-49c9-448d-89b8-7ca3e6dc66aa","metrics":{"durationMs":45.123,'
    '"billedDurationMs":46,"memorySizeMB":256,"maxMemoryUsedMB":81},"status":"success"}}',
)
# Assumed, not measured here: the latency of one AWS call (SQS, DynamoDB) from Lambda in the
# same region, and of one Userflow call. Billed duration waits on them.
AWS_CALL_SECONDS = 0.010
UPSTREAM_CALL_SECONDS = 0.100


@dataclass(frozen=True)
class Measured:
    """What the bench measured for one direction."""

    events_per_request: int
    ingest_cpu_per_request_s: float
    delivery_cpu_per_event_s: float
    message_bytes_per_event: float
    events_per_message: float
    # The ingest function's lines + the API access log line + Lambda's own records.
    log_bytes_per_request: float
    log_bytes_per_delivery_invocation: float  # the delivery function's + Lambda's own
    ingest_aws_calls_per_request: float
    delivery_aws_calls_per_event: float
    upstream_calls_per_event: float
    ledger_writes_per_event: float
    # Segment's /v1/batch: one call per delivery invocation, not one per event.
    upstream_batched: bool = False


def stack_config(stack: str) -> StackConfig:
    """The stack's validated config, as `pulumi up` would see it (secrets stubbed)."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    raw: dict[str, str] = {}
    for key, value in (document.get("config") or {}).items():
        if not key.startswith(NAMESPACE) or isinstance(value, dict):
            continue  # the AWS provider's keys; secure values
        raw[key[len(NAMESPACE):]] = json.dumps(value) if isinstance(value, list) else str(value)
    secrets = {key: pulumi.Output.secret("unused") for key in SECRET_KEYS}
    return parse_config(raw, stack, secrets, "us-east-1", ROOT)


def platform_log_bytes(system_log_level: str = SYSTEM_LOG_LEVEL) -> int:
    """Bytes Lambda logs itself per invocation: none at WARN and above (its records then
    are errors only), its start and report records at INFO and DEBUG."""
    if system_log_level in ("WARN", "ERROR", "FATAL"):
        return 0
    return sum(len(record) + LOG_EVENT_OVERHEAD_BYTES for record in PLATFORM_RECORDS)


def access_log_bytes() -> int:
    """The API access log line as API Gateway writes it, with typical values."""
    from components.aws.api import ACCESS_LOG_FORMAT

    typical = {"$context.requestId": "JKJaXmPLvHcESHA=", "$context.status": "200",
               "$context.integrationStatus": "200", "$context.integrationErrorMessage": "-",
               "$context.responseLatency": "45", "$context.identity.sourceIp": "54.240.196.186",
               "$context.routeKey": "POST /segment"}
    line = ACCESS_LOG_FORMAT
    for variable, value in sorted(typical.items(), key=lambda kv: -len(kv[0])):
        line = line.replace(variable, value)
    return len(line) + LOG_EVENT_OVERHEAD_BYTES


@dataclass(frozen=True)
class Line:
    item: str
    arithmetic: str
    dollars: float


def cost_lines(config: StackConfig, m: Measured,
               ingress: UserflowIngress = "apiGateway") -> list[Line]:
    """Dollars per million events, item by item, with the arithmetic behind each; `ingress`
    is the direction's front door (functionUrl: no API charge, no access log line)."""
    via_url = ingress == "functionUrl"
    per_m = 1e6
    gb = MEMORY_MB / 1024
    requests = per_m / m.events_per_request
    messages = per_m / m.events_per_message
    events_per_invocation = config.delivery_batch_size * m.events_per_message
    invocations = per_m / events_per_invocation
    ingest_s = (m.ingest_cpu_per_request_s + m.ingest_aws_calls_per_request * AWS_CALL_SECONDS)
    # Delivery waits on its calls in parallel, up to its thread count (bridge_code/delivery.py).
    from bridge_code.delivery import DELIVERY_THREADS

    parallel = max(1.0, min(events_per_invocation, DELIVERY_THREADS))
    if m.upstream_batched:
        wait_per_event = UPSTREAM_CALL_SECONDS / events_per_invocation
    else:
        wait_per_event = (m.upstream_calls_per_event * UPSTREAM_CALL_SECONDS
                          + m.delivery_aws_calls_per_event * AWS_CALL_SECONDS) / parallel
    delivery_s = m.delivery_cpu_per_event_s + wait_per_event
    chunks = math.ceil(m.message_bytes_per_event * m.events_per_message / SQS_CHUNK_BYTES)
    sqs_requests = messages * (chunks + 2 / SQS_POLLER_MESSAGES_PER_CALL)
    request_log_bytes = m.log_bytes_per_request - (access_log_bytes() if via_url else 0)
    log_bytes = (requests * request_log_bytes
                 + invocations * m.log_bytes_per_delivery_invocation)
    api = (Line("API Gateway", f"0 requests x ${API_PER_MILLION}/M (the {requests:,.0f} go to "
                "the function URL: no charge beyond the Lambda request)", 0.0)
           if via_url else
           Line("API Gateway", f"{requests:,.0f} requests x ${API_PER_MILLION}/M",
                requests * API_PER_MILLION / per_m))
    return [
        api,
        Line("Lambda requests", f"({requests:,.0f} ingest + {invocations:,.0f} delivery) x "
             f"${LAMBDA_REQUEST_PER_MILLION}/M",
             (requests + invocations) * LAMBDA_REQUEST_PER_MILLION / per_m),
        Line("Lambda GB-s", f"({requests:,.0f} x {ingest_s * 1000:.2f} ms + {per_m:,.0f} x "
             f"{delivery_s * 1000:.2f} ms) x {gb} GB x ${LAMBDA_ARM_GB_SECOND}",
             (requests * ingest_s + per_m * delivery_s) * gb * LAMBDA_ARM_GB_SECOND),
        Line("SQS", f"{messages:,.0f} messages x ({chunks} send chunk(s) + 2/"
             f"{SQS_POLLER_MESSAGES_PER_CALL} receive/delete) x ${SQS_PER_MILLION}/M",
             sqs_requests * SQS_PER_MILLION / per_m),
        Line("CloudWatch Logs", f"({requests:,.0f} x {request_log_bytes:.0f} B"
             f"{' (no access log line)' if via_url else ''} + "
             f"{invocations:,.0f} x {m.log_bytes_per_delivery_invocation:.0f} B) x "
             f"${LOGS_PER_GB}/GB", log_bytes / 1e9 * LOGS_PER_GB),
        ledger_line(config, m),
    ]


def ledger_line(config: StackConfig, m: Measured) -> Line:
    """The ledger's writes per million events: a request unit each on demand; provisioned, a
    write capacity unit serves 3,600 writes an hour, of which the scaler keeps the target
    share in use (every ledger item is under 1 KB: one unit per write)."""
    writes = 1e6 * m.ledger_writes_per_event
    capacity = config.ledger_capacity
    if not capacity.provisioned:
        return Line("DynamoDB ledger", f"{m.ledger_writes_per_event:.2f} WRU/event x "
                    f"${DYNAMODB_WRITE_PER_MILLION}/M", writes * DYNAMODB_WRITE_PER_MILLION / 1e6)
    utilization = capacity.target_utilization / 100
    return Line("DynamoDB ledger",
                f"provisioned: {writes:,.0f} writes x ${DYNAMODB_WCU_HOUR}/WCU-h / "
                f"(3600 writes/WCU-h x {capacity.target_utilization}% target)",
                writes * DYNAMODB_WCU_HOUR / (3600 * utilization))


def ledger_minimum(config: StackConfig, m: Measured) -> str | None:
    """A provisioned ledger's minimum capacity: dollars a month whatever the traffic, and the
    traffic below which that minimum, not the per-event line, is what the ledger costs."""
    capacity = config.ledger_capacity
    if not capacity.provisioned or m.ledger_writes_per_event == 0:
        return None
    monthly = (capacity.min_write * DYNAMODB_WCU_HOUR
               + capacity.min_read * DYNAMODB_RCU_HOUR) * HOURS_PER_MONTH
    covered = (capacity.min_write * capacity.target_utilization / 100 * 3600 * HOURS_PER_MONTH
               / m.ledger_writes_per_event)
    return (f"+ the ledger's minimum capacity, fixed: ${monthly:.2f} per month = "
            f"({capacity.min_write} WCU x ${DYNAMODB_WCU_HOUR} + {capacity.min_read} RCU x "
            f"${DYNAMODB_RCU_HOUR}) x {HOURS_PER_MONTH} h; it carries the first "
            f"{covered / 1e6:,.1f} M events a month at the target, below that it is the "
            "ledger's whole cost")


def with_provisioned_ledger(config: StackConfig) -> StackConfig:
    """The same stack with `ledgerCapacity: provisioned` (its other ledger keys as set)."""
    return replace(config, ledger_capacity=replace(config.ledger_capacity, mode="provisioned"))


def render(title: str, config: StackConfig, m: Measured, goal: str,
           ingress: UserflowIngress = "apiGateway") -> list[str]:
    lines = cost_lines(config, m, ingress)
    total = sum(line.dollars for line in lines)
    width = max(len(line.item) for line in lines)
    out = [f"{title}: ${total:.2f} per million events (goal {goal})"]
    out += [f"  {line.item:<{width}}  ${line.dollars:6.3f}  = {line.arithmetic}"
            for line in lines]
    minimum = ledger_minimum(config, m)
    return out if minimum is None else [*out, f"  {minimum}"]


def render_provisioned(config: StackConfig, m: Measured) -> list[str]:
    """Segment→Userflow for this stack were its ledger provisioned: cost, then capacity."""
    variant = with_provisioned_ledger(config)
    title = f"Segment→Userflow, stack {config.environment} with ledgerCapacity: provisioned"
    return [*render(title, variant, m, "≤ $0.50"),
            "  capacity: " + render_capacity("Segment→Userflow", variant, m)]


def describe_inputs(config: StackConfig) -> str:
    return (f"segmentBatching={str(config.segment_batching).lower()} "
            f"segmentBatchSize={config.segment_batch_size} "
            f"deliveryBatchSize={config.delivery_batch_size} "
            f"ledgerCapacity={config.ledger_capacity.mode} memory={MEMORY_MB} MB arm64, "
            f"logs {LOG_FORMAT}, Lambda's own at {SYSTEM_LOG_LEVEL} "
            f"({platform_log_bytes()} B per invocation); "
            f"assumed latencies: AWS call {AWS_CALL_SECONDS * 1000:.0f} ms, Userflow/Segment "
            f"call {UPSTREAM_CALL_SECONDS * 1000:.0f} ms")


def price_note() -> str:
    return ("Prices: us-east-1 list prices as published on " + ", ".join(PRICE_SOURCES)
            + " (written in bench/cost_model.py, not fetched); free tiers left out.")


@dataclass(frozen=True)
class Capacity:
    """Sustained events/s of one direction, stage by stage; the smallest limits."""

    api: float
    ingest: float
    delivery: float
    ledger: float = math.inf
    """A provisioned ledger's maximum write capacity over the writes per event."""

    def limit(self) -> tuple[str, float]:
        return min((("API throttle", self.api), ("ingest concurrency", self.ingest),
                    ("delivery concurrency", self.delivery),
                    ("ledger maximum write capacity", self.ledger)), key=lambda kv: kv[1])


def capacity(config: StackConfig, m: Measured,
             ingress: UserflowIngress = "apiGateway") -> Capacity:
    """Events/s each stage sustains: the API's steady rate (none in front of a function URL),
    ingest's reserved concurrency over its duration, delivery's reserved concurrency over an
    invocation's duration, and a provisioned ledger's maximum write capacity (the scaler goes
    no higher)."""
    from bridge_code.delivery import DELIVERY_THREADS

    ingest_s = m.ingest_cpu_per_request_s + m.ingest_aws_calls_per_request * AWS_CALL_SECONDS
    per_invocation = config.delivery_batch_size * m.events_per_message
    if m.upstream_batched:
        invocation_s = UPSTREAM_CALL_SECONDS + per_invocation * m.delivery_cpu_per_event_s
    else:
        rounds = math.ceil(per_invocation / DELIVERY_THREADS)
        invocation_s = rounds * (UPSTREAM_CALL_SECONDS
                                 + m.delivery_aws_calls_per_event * AWS_CALL_SECONDS)
    unreserved = 1000  # an account's default concurrency limit when -1 (unreserved)
    ingest_slots = config.ingest_reserved_concurrency
    delivery_slots = config.delivery_reserved_concurrency
    ledger = config.ledger_capacity
    return Capacity(
        ledger=ledger.max_write / m.ledger_writes_per_event
        if ledger.provisioned and m.ledger_writes_per_event else math.inf,
        api=math.inf if ingress == "functionUrl"
        else config.api_throttle_rate_limit * m.events_per_request,
        ingest=(ingest_slots if ingest_slots > 0 else unreserved) / ingest_s
        * m.events_per_request,
        delivery=(delivery_slots if delivery_slots > 0 else unreserved) / invocation_s
        * per_invocation)


def render_capacity(title: str, config: StackConfig, m: Measured,
                    ingress: UserflowIngress = "apiGateway") -> str:
    c = capacity(config, m, ingress)
    name, value = c.limit()
    api = ("API none (function URL: no throttle)" if ingress == "functionUrl"
           else f"API {c.api:,.0f}/s ({config.api_throttle_rate_limit:g} req/s x "
                f"{m.events_per_request})")
    return (f"{title}: {api}, ingest {c.ingest:,.0f}/s "
            f"({config.ingest_reserved_concurrency} slots), delivery {c.delivery:,.0f}/s "
            f"({config.delivery_reserved_concurrency} slots x "
            f"{config.delivery_batch_size * m.events_per_message:.0f} events/invocation)"
            + (f", ledger {c.ledger:,.0f}/s ({config.ledger_capacity.max_write} WCU / "
               f"{m.ledger_writes_per_event:.2f} writes/event)" if c.ledger < math.inf else "")
            + f" -> {value:,.0f} events/s, limited by {name}")


def function_url_option(stack: str, config: StackConfig, m: Measured) -> list[str]:
    """Userflow→Segment of `stack` with `userflowIngress: functionUrl`, cost and capacity.
    Behind API Gateway the direction cannot go below $1.00 + $0.20 + $0.40 per million
    webhooks (API request, ingest request, one SendMessage); the function URL drops the
    first, and the API's access log line."""
    via_url = replace(config, userflow_ingress="functionUrl")
    return [
        f"Stack {stack} with userflowIngress: functionUrl (Userflow's webhooks on the ingest "
        "function's URL; Segment→Userflow unchanged):",
        *render("Userflow→Segment", via_url, m, "≤ $1.30", "functionUrl"),
        "  " + render_capacity("Userflow→Segment", via_url, m, "functionUrl"),
        "",
    ]
