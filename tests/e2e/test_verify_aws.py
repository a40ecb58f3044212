"""`verify` for an AWS-hosted stack: secrets from Secrets Manager by the ARNs the stack
exports, arrival checked through SQS (the work queue drains, the dead-letter queue does not
grow), and Segment's own count through its Public API (a wrong write key in the secret FAILs
naming it). The "deployed" bridge is the local bridge, whose SQS and Secrets Manager are moto;
Segment is the emulator, holding the sources and destination the stack would have created."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from ops import verify
from sandbox.local_bridge import LocalBridge
from sandbox.segment import ADMIN_TOKEN, SegmentEmulator
from sandbox.userflow import UserflowEmulator
from tests.emulators.helpers import create_destination, create_source

pytestmark = pytest.mark.e2e

SHARED_SECRET = "test-shared-secret-aws-verify"
WEBHOOK_SECRET = "test-userflow-webhook-secret-aws-verify"


@dataclass
class FakeStack:
    """The outputs and config a deployed staging stack would give verify."""

    outputs_: dict[str, Any]
    config_: dict[str, Any]

    def outputs(self, stack: str, *, show_secrets: bool = False) -> dict[str, Any]:
        return dict(self.outputs_)

    def config(self, stack: str, config_file: Path | None = None, *,
               show_secrets: bool = False) -> dict[str, Any]:
        return dict(self.config_)

    def export(self, stack: str, *, show_secrets: bool = False) -> dict[str, Any]:
        raise AssertionError("verify of an AWS stack must not read the state")


@dataclass
class AwsLike:
    stack: FakeStack
    userflow: UserflowEmulator


WRONG_WRITE_KEY = "wk-not-a-source"


@pytest.fixture(params=["right write key"])
def aws_like(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
             ) -> Iterator[AwsLike]:
    with SegmentEmulator() as segment, UserflowEmulator() as userflow:
        # What the stack created in Segment: the app source with the bridge's destination,
        # and the Userflow source whose write key the bridge sends with.
        app = create_source(segment.url, "app-staging")
        destination = create_destination(segment.url, app["id"], secret=SHARED_SECRET)
        userflow_source = create_source(segment.url, "userflow-staging")
        write_key = (userflow_source["writeKeys"][0] if request.param == "right write key"
                     else WRONG_WRITE_KEY)
        bridge = LocalBridge(env={
            "USERFLOW_API_URL": userflow.url, "USERFLOW_API_KEY": "ak_sandbox_local",
            "SEGMENT_TRACKING_URL": segment.url, "SEGMENT_WRITE_KEY": write_key,
            "SEGMENT_SHARED_SECRET": SHARED_SECRET, "USERFLOW_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }, tuning={"max_attempts": 1, "backoff_base_seconds": 0.01})
        with bridge:
            assert bridge.runtime is not None
            aws = bridge.runtime.aws
            monkeypatch.setenv("AWS_ENDPOINT_URL", aws.sqs.meta.endpoint_url)
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", "sandbox")
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sandbox")
            # moto's backend is shared by every server in the process: unique names.
            suffix = uuid.uuid4().hex[:8]
            arns = {name: aws.secretsmanager.create_secret(Name=f"verify-{suffix}/{name}",
                                                          SecretString=value)["ARN"]
                    for name, value in (("shared", SHARED_SECRET), ("webhook", WEBHOOK_SECRET))}
            stack = FakeStack(
                outputs_={"bridgeUrl": bridge.url, "segmentSharedSecretArn": arns["shared"],
                          "userflowWebhookSecretArn": arns["webhook"],
                          "queueUrl": bridge.queue_url, "deadLetterQueueUrl": bridge.dlq_url,
                          "appSourceId": app["id"], "destinationId": destination["id"],
                          "userflowSourceId": userflow_source["id"],
                          "userflowSourceSlug": "userflow-staging",
                          "segmentWriteKeySecretArn": "arn:aws:secretsmanager:us-east-1:1:"
                                                      "secret:userflow-segment-write-key"},
                config_={"userflow-segment:hosting": "aws", "aws:region": "us-east-1",
                         "userflow-segment:userflowApiUrl": userflow.url,
                         "userflow-segment:userflowApiKey": "ak_sandbox_local",
                         "userflow-segment:segmentApiUrl": segment.url,
                         "userflow-segment:segmentToken": ADMIN_TOKEN},
            )
            yield AwsLike(stack, userflow)


def test_verify_aws_stack_passes_through_secrets_manager_and_sqs(aws_like: AwsLike) -> None:
    lines: list[str] = []
    assert verify.verify("staging", engine=aws_like.stack, wait_s=15, out=lines.append)
    text = "\n".join(lines)
    assert "FAIL" not in text
    assert len([line for line in lines if line.startswith("PASS")]) == 10, text
    assert "checked via SQS" in text
    assert "PASS  Segment counted it on the Userflow source (Public API)" in text
    assert SHARED_SECRET not in text and WEBHOOK_SECRET not in text


@pytest.mark.parametrize("aws_like", ["wrong write key"], indirect=True)
def test_verify_aws_stack_fails_naming_the_write_key_secret_when_segment_drops(
    aws_like: AwsLike,
) -> None:
    # GIVEN a bridge whose write key secret holds a key no Segment source has
    lines: list[str] = []
    # WHEN verify runs (Segment's reports are instant here: a short report wait)
    assert not verify.verify("staging", engine=aws_like.stack, wait_s=15, out=lines.append,
                             report_wait_s=4)
    text = "\n".join(lines)
    # THEN the queues look fine, but Segment's own count fails, naming the secret to look at
    assert "PASS  webhook forwarded to Segment" in text
    assert "FAIL  Segment counted it on the Userflow source (Public API)" in text
    hint = next(line for line in lines if line.strip().startswith("look at:"))
    assert "segmentWriteKeySecretArn" in hint and "userflow-segment-write-key" in hint
    assert "pulumi up --stack staging" in hint
    assert WRONG_WRITE_KEY not in text


def test_verify_aws_stack_fails_on_a_new_dead_letter(aws_like: AwsLike) -> None:
    # GIVEN Userflow refusing events for good (a 400 is not retried: dead-lettered)
    reply = requests.post(f"{aws_like.userflow.url}/__sandbox__/faults", timeout=5,
                          json={"method": "POST", "path_prefix": "/events", "status": 400,
                                "count": 10})
    assert reply.status_code == 200
    lines: list[str] = []
    # WHEN verify runs THEN the event check fails, naming the dead-letter queue
    assert not verify.verify("staging", engine=aws_like.stack, wait_s=15, out=lines.append)
    text = "\n".join(lines)
    assert "FAIL  event arrived in Userflow" in text
    assert "dead-letter queue" in text
    assert "PASS  user arrived in Userflow" in text


class ApiWithoutUserflow:
    """API Gateway with userflowIngress=functionUrl, in front of `bridge_url`: it forwards
    the routes it keeps (GET /health, POST /segment) and, as API Gateway does for a route it
    does not have, answers anything else 404 {"message": "Not Found"}."""

    ROUTES = frozenset({("GET", "/health"), ("POST", "/segment")})

    def __init__(self, bridge_url: str) -> None:
        routes, target = self.ROUTES, bridge_url

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if (self.command, self.path) in routes:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() in ("content-type", "x-signature")}
                    reply = requests.request(self.command, target + self.path, data=body,
                                             headers=headers, timeout=10)
                    status, payload = reply.status_code, reply.content
                else:
                    status, payload = 404, b'{"message":"Not Found"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_verify_posts_the_webhook_where_a_function_url_stack_says_userflow_delivers(
    aws_like: AwsLike,
) -> None:
    # GIVEN a functionUrl stack: the API (bridgeUrl) has no /userflow route; the stack's
    # userflowRouteUrl is the ingest function's URL (here the bridge itself)
    bridge_url = aws_like.stack.outputs_["bridgeUrl"]
    api = ApiWithoutUserflow(bridge_url)
    try:
        outputs = {**aws_like.stack.outputs_, "bridgeUrl": api.url,
                   "userflowRouteUrl": f"{bridge_url}/userflow"}
        lines: list[str] = []
        # WHEN verify runs THEN every check passes, the webhook through the function URL
        stack = replace(aws_like.stack, outputs_=outputs)
        assert verify.verify("staging", engine=stack, wait_s=15, out=lines.append), lines
        text = "\n".join(lines)
        assert "FAIL" not in text
        assert "PASS  Userflow webhook → bridge (/userflow) accepted" in text
        assert f"PASS  stack outputs and config: hosting=aws, bridge {api.url}" in text
        # AND without the export, the webhook goes to the API and fails there, as it would
        outputs.pop("userflowRouteUrl")
        lines.clear()
        assert not verify.verify("staging", engine=replace(aws_like.stack, outputs_=outputs),
                                 wait_s=5, out=lines.append, report_wait_s=1)
        assert any("POST /userflow answered 404" in line for line in lines), lines
    finally:
        api.close()
