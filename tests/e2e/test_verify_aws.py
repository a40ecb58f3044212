"""`verify` for an AWS-hosted stack: secrets from Secrets Manager by the ARNs the stack
exports, arrival checked through SQS (the work queue drains, the dead-letter queue does not
grow). The "deployed" bridge is the local bridge, whose SQS and Secrets Manager are moto."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from ops import verify
from sandbox.local_bridge import LocalBridge
from sandbox.segment import SegmentEmulator
from sandbox.userflow import UserflowEmulator

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


@pytest.fixture
def aws_like(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsLike]:
    with SegmentEmulator() as segment, UserflowEmulator() as userflow:
        bridge = LocalBridge(env={
            "USERFLOW_API_URL": userflow.url, "USERFLOW_API_KEY": "ak_sandbox_local",
            "SEGMENT_TRACKING_URL": segment.url, "SEGMENT_WRITE_KEY": "wk-not-a-source",
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
                          "queueUrl": bridge.queue_url, "deadLetterQueueUrl": bridge.dlq_url},
                config_={"userflow-segment:hosting": "aws", "aws:region": "us-east-1",
                         "userflow-segment:userflowApiUrl": userflow.url,
                         "userflow-segment:userflowApiKey": "ak_sandbox_local"},
            )
            yield AwsLike(stack, userflow)


def test_verify_aws_stack_passes_through_secrets_manager_and_sqs(aws_like: AwsLike) -> None:
    lines: list[str] = []
    assert verify.verify("staging", engine=aws_like.stack, wait_s=15, out=lines.append)
    text = "\n".join(lines)
    assert "FAIL" not in text
    assert len([line for line in lines if line.startswith("PASS")]) == 8, text
    assert "checked via SQS" in text
    assert SHARED_SECRET not in text and WEBHOOK_SECRET not in text


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
