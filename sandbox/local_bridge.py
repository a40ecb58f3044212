"""The bridge served locally: the Lambda handlers behind a plain HTTP server, with SQS,
Secrets Manager and the ledger's DynamoDB table provided by moto over HTTP.

    python -m sandbox aws --port 0                                # READY aws URL
    BRIDGE_AWS_ENDPOINT_URL=URL python -m sandbox bridge --port PORT

Where AWS is: with BRIDGE_AWS_ENDPOINT_URL, the local AWS service (`python -m sandbox aws`,
its own process, owned by whoever started it): the queues, dead letters, secrets and ledger
outlive the bridge, and a bridge started again with the same settings (BRIDGE_LOCAL_NAME,
default `bridge`, names them) finds them and delivers what an earlier one acknowledged.
Without it, moto runs inside the bridge's process and everything queued ends with it (a note
on stderr says so). On SIGTERM the bridge stops taking work, lets the batch in hand finish
and hands back what it could not deliver (visibility reset) before it exits.

Configured by USERFLOW_API_URL, USERFLOW_API_KEY, SEGMENT_TRACKING_URL, SEGMENT_WRITE_KEY,
SEGMENT_SHARED_SECRET, USERFLOW_WEBHOOK_SECRET (the two shared secrets may be
comma-separated lists), BRIDGE_MAPPING, BRIDGE_SEGMENT_BATCHING (true when the Segment
destination batches), BRIDGE_ACCEPTANCE_WINDOW_SECONDS, and the two above. A direction whose
two secrets are not both given is "not configured": its route answers 503 and /health says so.

Requests become API Gateway v2 events for `IngestApp.handle`; a delivery thread long-polls
the queue, builds the Lambda SQS event and calls `DeliveryApp.handle` - the Lambda code path,
boto3 included. Extra routes: GET /__sandbox__/stats, POST /__sandbox__/replay.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from moto.server import ThreadedMotoServer

from bridge_code import logs
from bridge_code.aws import AwsClients, AwsTarget
from bridge_code.delivery import DeliveryApp
from bridge_code.ingest import IngestApp
from bridge_code.ledger import DELIVERED
from bridge_code.replay import redrive
from bridge_code.runtime import BridgeRuntime
from bridge_code.settings import BridgeSettings
from sandbox.cli import add_listen_arguments, stop_on_signals, wait_until

LOCAL_REGION = "us-east-1"
DEFAULT_LOCAL_NAME = "bridge"
# An SQS queue name allows 80 of these characters; the DLQ adds "-dlq".
LOCAL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Short so that a message left for redelivery comes back within seconds locally. As AWS
# requires of a Lambda event source, the invocation budget does not exceed it, so a message
# is never redelivered while its first delivery is still running.
LOCAL_VISIBILITY_TIMEOUT = 5
LOCAL_LAMBDA_BUDGET_SECONDS = 5.0
MAX_LOCAL_BODY = 4 * 1024 * 1024

# (direction, ingest secret variable, delivery secret variable, *_ARN variable names)
DIRECTION_SECRETS = (
    ("segment_to_userflow", "SEGMENT_SHARED_SECRET", "USERFLOW_API_KEY",
     "SEGMENT_SHARED_SECRET_ARN", "USERFLOW_API_KEY_ARN"),
    ("userflow_to_segment", "USERFLOW_WEBHOOK_SECRET", "SEGMENT_WRITE_KEY",
     "USERFLOW_WEBHOOK_SECRET_ARN", "SEGMENT_WRITE_KEY_ARN"),
)


class _LambdaContext:
    """The one part of the Lambda context the delivery handler reads."""

    def __init__(self, budget_seconds: float) -> None:
        self._deadline = time.monotonic() + budget_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def sqs_lambda_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """ReceiveMessage output in the shape Lambda's SQS event source hands to a function."""
    records = []
    for m in messages:
        attributes = {key: {"stringValue": value.get("StringValue"),
                            "dataType": value.get("DataType", "String")}
                      for key, value in m.get("MessageAttributes", {}).items()}
        records.append({"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                        "body": m["Body"], "attributes": m.get("Attributes", {}),
                        "messageAttributes": attributes, "md5OfBody": m.get("MD5OfBody"),
                        "eventSource": "aws:sqs", "eventSourceARN": queue_arn,
                        "awsRegion": LOCAL_REGION})
    return {"Records": records}


def deliver_once(sqs: Any, queue_url: str, queue_arn: str, app: DeliveryApp,
                 wait_seconds: int = 1, budget_seconds: float = LOCAL_LAMBDA_BUDGET_SECONDS,
                 on_failed: Callable[[list[str]], None] | None = None) -> int:
    """One poll of the event source mapping: receive, invoke, delete what succeeded; the
    receipt handles of what failed (left to the visibility timeout) go to `on_failed`."""
    reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                WaitTimeSeconds=wait_seconds, AttributeNames=["All"],
                                MessageAttributeNames=["All"])
    messages = reply.get("Messages", [])
    if not messages:
        return 0
    result = app.handle(sqs_lambda_event(messages, queue_arn), _LambdaContext(budget_seconds))
    failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
    done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(messages) if m["MessageId"] not in failed]
    if done:
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=done)
    if failed and on_failed is not None:
        on_failed([m["ReceiptHandle"] for m in messages if m["MessageId"] in failed])
    return len(messages)


def hand_back(sqs: Any, queue_url: str, receipt_handles: list[str]) -> None:
    """Make messages visible again now (visibility 0) rather than after their timeout."""
    for start in range(0, len(receipt_handles), 10):
        entries = [{"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                   for i, handle in enumerate(receipt_handles[start:start + 10])]
        try:
            # An entry whose message was received again meanwhile fails alone: it is
            # someone else's now.
            sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
        except Exception as error:  # they come back after the visibility timeout anyway
            logs.log("hand back failed", "WARNING", error=type(error).__name__)


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def create_ledger_table(dynamodb: Any, name: str) -> str:
    """The ledger table as the AWS program declares it: key `pk`, TTL on `expires_at`; an
    existing one is kept (a restarted bridge keeps its ledger)."""
    try:
        dynamodb.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    except Exception as error:
        if _error_code(error) != "ResourceInUseException":
            raise
        return name
    dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": "expires_at"})
    return name


def put_secret(secretsmanager: Any, name: str, value: str) -> str:
    """Create the secret, or give an existing one this value; its ARN either way."""
    try:
        return str(secretsmanager.create_secret(Name=name, SecretString=value)["ARN"])
    except Exception as error:
        if _error_code(error) != "ResourceExistsException":
            raise
    return str(secretsmanager.put_secret_value(SecretId=name, SecretString=value)["ARN"])


def hand_over_delivery_claims(dynamodb: Any, table: str) -> int:
    """Mark the delivery claims still pending as uncertain; return how many.

    A local bridge is its queue's only consumer, so a claim pending when it starts belongs to
    a bridge that died mid-call. Left alone it would hold its event for the rest of its hold
    (half a minute and more) while SQS hands the message back and counts receives towards
    the dead-letter threshold; uncertain, the next delivery takes it over at once, calls
    Userflow again (the dead call may or may not have reached it) and counts it ambiguous.
    """
    handed = 0
    scan: dict[str, Any] = {
        "TableName": table, "ConsistentRead": True,
        "FilterExpression": "#state = :pending AND begins_with(pk, :kind)",
        "ExpressionAttributeNames": {"#state": "state"},
        "ExpressionAttributeValues": {":pending": {"S": "pending"},
                                      ":kind": {"S": f"{DELIVERED}#"}}}
    while True:
        page = dynamodb.scan(**scan)
        for item in page.get("Items", []):
            try:
                dynamodb.update_item(
                    TableName=table, Key={"pk": item["pk"]},
                    UpdateExpression="SET #state = :uncertain",
                    ConditionExpression="#token = :token AND #state = :pending",
                    ExpressionAttributeNames={"#state": "state", "#token": "token"},
                    ExpressionAttributeValues={":token": item["token"],
                                               ":pending": {"S": "pending"},
                                               ":uncertain": {"S": "uncertain"}})
            except Exception as error:
                if _error_code(error) != "ConditionalCheckFailedException":
                    raise
                continue  # completed or released meanwhile
            handed += 1
        if "LastEvaluatedKey" not in page:
            return handed
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def content_length(value: str | None, method: str) -> int | str:
    """The body length a request announces, or why its framing is refused."""
    if value is None:
        # Bodies are read by Content-Length only (no chunked framing here).
        return "Content-Length is required" if method in {"POST", "PUT", "PATCH"} else 0
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        return "Content-Length must be a non-negative whole number"
    # Anything over 18 digits is over the limit anyway (and int() refuses 4,300+ digits).
    return int(text) if len(text) <= 18 else sys.maxsize


def api_gateway_event(method: str, raw_path: str, query: str, headers: Mapping[str, str],
                      body: bytes) -> dict[str, Any]:
    """An HTTP request as API Gateway's HTTP API (payload 2.0) passes it to Lambda."""
    lowered = {k.lower(): v for k, v in headers.items()}
    as_text: str | None
    try:
        as_text = body.decode("utf-8") if "json" in lowered.get("content-type", "") else None
    except UnicodeDecodeError:
        as_text = None
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": lowered.get("user-agent", "")},
            "requestId": str(uuid.uuid4()),
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "body": (as_text if as_text is not None else base64.b64encode(body).decode("ascii"))
        if body else None,
        "isBase64Encoded": bool(body) and as_text is None,
    }


class BridgeHttpServer(ThreadingHTTPServer):
    """One thread per connection, and a listen backlog for bursts: the standard library's
    default of 5 refuses connections from a few dozen clients arriving together."""

    daemon_threads = True
    request_queue_size = 128


class LocalBridge:
    """The bridge in-process: `LocalBridge(host, port, env).start()`, `.url`, `.stop()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 env: Mapping[str, str] | None = None,
                 visibility_timeout: int = LOCAL_VISIBILITY_TIMEOUT,
                 tuning: Mapping[str, Any] | None = None) -> None:
        self.host, self.port = host, port
        self.env = dict(env or {})
        self.visibility_timeout = visibility_timeout
        # Overrides of BridgeSettings' retry/timeout knobs (tests use shorter ones).
        self.tuning = dict(tuning or {})
        self.notes: list[str] = []
        self._stop = threading.Event()
        self._moto: ThreadedMotoServer | None = None
        self._http: BridgeHttpServer | None = None
        self._threads: list[threading.Thread] = []
        self.runtime: BridgeRuntime | None = None
        self.ingest: IngestApp | None = None
        self.delivery: DeliveryApp | None = None
        self.queue_url = self.dlq_url = self.queue_arn = ""
        # The local AWS service to use; empty: moto inside this process.
        self.aws_endpoint_url = self.env.get("BRIDGE_AWS_ENDPOINT_URL", "").strip()
        # In-process moto keeps its state per Python process, not per server: bridges in one
        # process (the tests) would share a fixed name's queues, and there is nothing for a
        # later bridge to find again anyway.
        self.name = self.env.get("BRIDGE_LOCAL_NAME", "").strip() or (
            DEFAULT_LOCAL_NAME if self.aws_endpoint_url else f"bridge-{uuid.uuid4().hex[:8]}")

    @property
    def url(self) -> str:
        if self._http is None:
            raise RuntimeError("the local bridge is not started")
        return f"http://{self.host}:{self._http.server_address[1]}"

    def start(self) -> LocalBridge:
        if not LOCAL_NAME.fullmatch(self.name):
            raise ValueError("BRIDGE_LOCAL_NAME must be 1 to 64 letters, digits, '-' or '_'")
        logs.use_stream(sys.stderr)
        logging.getLogger("werkzeug").setLevel("ERROR")
        if not self.aws_endpoint_url:
            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._moto.start()
            moto_host, moto_port = self._moto.get_host_and_port()
            self.aws_endpoint_url = f"http://{moto_host}:{moto_port}"
            self.notes.append("the queues and the ledger are in this process's memory: what "
                              "it acknowledged but has not delivered is lost when it stops; "
                              "start `python -m sandbox aws` and set BRIDGE_AWS_ENDPOINT_URL "
                              "to its URL for a queue that outlives the bridge")
        target = AwsTarget(endpoint_url=self.aws_endpoint_url, region=LOCAL_REGION,
                           access_key_id="sandbox",
                           secret_access_key="sandbox")  # noqa: S106 - moto's dummy credentials
        settings_env = self._provision(target)
        if self._moto is None and settings_env.get("BRIDGE_LEDGER_TABLE"):
            handed = hand_over_delivery_claims(AwsClients(target).dynamodb,
                                               settings_env["BRIDGE_LEDGER_TABLE"])
            if handed:
                self.notes.append(f"{handed} delivery claim(s) of an earlier bridge taken "
                                  "over as uncertain (delivered again, counted ambiguous)")
        settings = dataclasses.replace(BridgeSettings.from_env(settings_env), **self.tuning)
        self.runtime = BridgeRuntime.build(settings, target)
        self.ingest = IngestApp(self.runtime)
        self.delivery = DeliveryApp(self.runtime)
        self._http = BridgeHttpServer((self.host, self.port), self._handler_class())
        self._threads = [threading.Thread(target=self._http.serve_forever, daemon=True,
                                          name="local-bridge-http"),
                         threading.Thread(target=self._delivery_loop, daemon=True,
                                          name="local-bridge-delivery")]
        for thread in self._threads:
            thread.start()
        return self

    def _provision(self, target: AwsTarget) -> dict[str, str]:
        """Create the queues, ledger and secrets, or find them as an earlier bridge of the
        same name left them; return the environment the handlers read."""
        aws = AwsClients(target)
        sqs, secrets = aws.sqs, aws.secretsmanager
        self.dlq_url = sqs.create_queue(QueueName=f"{self.name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        # The AWS redrive policy is the backstop behind the handler's own dead-lettering.
        # The same name and attributes give the existing queue back (other attributes:
        # QueueAlreadyExists, the start fails and says so).
        self.queue_url = sqs.create_queue(QueueName=self.name, Attributes={
            "VisibilityTimeout": str(self.visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                         "maxReceiveCount": "10"}),
        })["QueueUrl"]
        self.queue_arn = sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        env = {key: value for key, value in self.env.items()
               if key in {"USERFLOW_API_URL", "SEGMENT_TRACKING_URL", "BRIDGE_MAPPING",
                          "SECRETS_TTL_SECONDS", "BRIDGE_SEGMENT_BATCHING",
                          "BRIDGE_ACCEPTANCE_WINDOW_SECONDS"}}
        env.update(QUEUE_URL=self.queue_url, DEAD_LETTER_QUEUE_URL=self.dlq_url,
                   BRIDGE_LEDGER_TABLE=create_ledger_table(aws.dynamodb, f"{self.name}-ledger"))
        for direction, ingest_var, delivery_var, ingest_arn, delivery_arn in DIRECTION_SECRETS:
            given = {var: self.env.get(var, "").strip() for var in (ingest_var, delivery_var)}
            missing = [var for var, value in given.items() if not value]
            if missing:
                self.notes.append(f"{direction} is not configured: {', '.join(missing)} "
                                  "not set")
                continue
            for var, arn_var in ((ingest_var, ingest_arn), (delivery_var, delivery_arn)):
                env[arn_var] = put_secret(secrets, f"{self.name}/{var.lower()}", given[var])
        return env

    def _delivery_loop(self) -> None:
        assert self.runtime is not None and self.delivery is not None
        sqs = self.runtime.aws.sqs
        # Messages that failed and wait out their visibility timeout, until when: on stop
        # they are handed back, so that the next bridge takes them at once.
        waiting: dict[str, float] = {}

        def note_failed(handles: list[str]) -> None:
            now = time.monotonic()
            for handle, until in list(waiting.items()):
                if until <= now:
                    del waiting[handle]
            waiting.update(dict.fromkeys(handles, now + self.visibility_timeout))

        while not self._stop.is_set():
            try:
                deliver_once(sqs, self.queue_url, self.queue_arn, self.delivery,
                             budget_seconds=float(self.visibility_timeout),
                             on_failed=note_failed)
            except Exception as error:
                if self._stop.is_set():
                    break
                logs.log("local delivery poll failed", "WARNING",
                         error=type(error).__name__)
                self._stop.wait(0.5)
        now = time.monotonic()
        hand_back(sqs, self.queue_url, [h for h, until in waiting.items() if until > now])

    def stats(self) -> dict[str, Any]:
        assert self.runtime is not None
        sqs = self.runtime.aws.sqs
        depth: dict[str, int] = {}
        for name, url in (("queue", self.queue_url), ("dead_letter_queue", self.dlq_url)):
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])[
                "Attributes"]
            depth[name] = (int(attributes.get("ApproximateNumberOfMessages", 0))
                           + int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)))
        return {**self.runtime.stats.snapshot(), "queues": depth}

    def replay(self, max_messages: int | None = None) -> dict[str, Any]:
        assert self.runtime is not None
        counts = redrive(self.runtime.aws.sqs, self.dlq_url, self.queue_url, max_messages,
                         wait_seconds=0, stats=self.runtime.stats)
        return {"moved": counts.moved, "failed": counts.failed}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return  # the bridge logs one JSON line per request itself

            def _answer(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, status: int, data: object) -> None:
                self._answer(status, json.dumps(data).encode(),
                             {"content-type": "application/json"})

            def _any(self) -> None:
                path, _, query = self.path.partition("?")
                length = content_length(self.headers.get("content-length"), self.command)
                if isinstance(length, str):
                    # The body cannot be found: answer, then drop the connection.
                    self.close_connection = True
                    self._json(400, {"error": length})
                    return
                if length > MAX_LOCAL_BODY:
                    self.close_connection = True
                    self._json(413, {"error": f"request body is {length} bytes; too large"})
                    return
                body = self.rfile.read(length) if length else b""
                if path == "/__sandbox__/stats" and self.command == "GET":
                    self._json(200, bridge.stats())
                    return
                if path == "/__sandbox__/replay" and self.command == "POST":
                    try:
                        options = json.loads(body) if body else {}
                        limit = options.get("max") if isinstance(options, dict) else None
                    except (ValueError, RecursionError):
                        limit = None
                    self._json(200, bridge.replay(limit if isinstance(limit, int) else None))
                    return
                assert bridge.ingest is not None
                event = api_gateway_event(self.command, path, query, dict(self.headers), body)
                result = bridge.ingest.handle(event, None)
                raw = result.get("body") or ""
                payload = (base64.b64decode(raw) if result.get("isBase64Encoded")
                           else raw.encode("utf-8"))
                self._answer(int(result["statusCode"]), payload, result.get("headers", {}))

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        return Handler

    def stop(self) -> None:
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.delivery is not None:
            self.delivery.close()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def __enter__(self) -> LocalBridge:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox bridge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_listen_arguments(parser)
    args = parser.parse_args(argv)
    stopping = stop_on_signals()
    bridge = LocalBridge(args.host, args.port, os.environ)
    try:
        bridge.start()
    except Exception as error:
        print(f"local bridge failed to start: {type(error).__name__}: {error}", file=sys.stderr)
        bridge.stop()
        return 1
    for note in bridge.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"READY bridge {bridge.url}", flush=True)
    wait_until(stopping)
    bridge.stop()
    return 0
