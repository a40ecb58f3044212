"""The bridge's two Lambda functions (ingest, delivery), each with its own role and log group.

Least privilege, built as data: each role may read only the secrets its function uses, touch
only this environment's queues and its own kind of ledger item, and write only to its own log
group. The functions' code is
the deterministic zip from `components.aws.packaging`; the handlers are the agreed entry points
(docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.ledger import ACCEPTED_KIND, DELIVERED_KIND, SETTLED_KIND, ledger_statement
from components.aws.metrics import SETTINGS_VARIABLE
from components.project import component_type

INGEST_HANDLER = "bridge_code.ingest.handler"
DELIVERY_HANDLER = "bridge_code.delivery.handler"
MEMORY_MB = 256
# The functions' lines are JSON (and so is what Lambda writes itself). The bridge's own lines
# pass at INFO; Lambda's own records only at WARN and above (errors: a crash, a timeout).
# Its INFO records, platform.start and platform.report (the START/END/REPORT lines of the
# text format), would add about 430 billed bytes per invocation, nearly what the bridge logs
# for a webhook (its request line with its metrics). Without them the log group does not
# show each invocation's duration, billed duration, memory used and init time: the
# AWS/Lambda metrics keep duration, errors and throttles (dashboard, alarms), but memory
# used per invocation is recorded nowhere (set SYSTEM_LOG_LEVEL to "INFO" while sizing
# memory). bench/cost_model.py counts the records by this setting.
LOG_FORMAT = "JSON"
APPLICATION_LOG_LEVEL = "INFO"
SYSTEM_LOG_LEVEL = "WARN"

PolicyDocument = dict[str, Any]

LAMBDA_TRUST_POLICY: PolicyDocument = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@dataclass(frozen=True)
class BridgeFunctionsArgs:
    """What the functions component needs."""

    name_prefix: str
    """Prefix of every physical name (carries the environment)."""
    archive_path: Path
    """The deterministic bridge zip."""
    queue_arn: pulumi.Input[str]
    queue_url: pulumi.Input[str]
    dead_letter_queue_arn: pulumi.Input[str]
    dead_letter_queue_url: pulumi.Input[str]
    segment_shared_secret_arn: pulumi.Input[str]
    userflow_webhook_secret_arn: pulumi.Input[str]
    userflow_api_key_arn: pulumi.Input[str]
    segment_write_key_arn: pulumi.Input[str]
    ledger_table_name: pulumi.Input[str]
    ledger_table_arn: pulumi.Input[str]
    segment_batching: bool
    """Whether the Segment destination batches (ingest then accepts first-element signatures)."""
    userflow_api_url: str
    segment_tracking_url: str
    secrets_ttl_seconds: int
    ingest_timeout_seconds: int
    delivery_timeout_seconds: int
    ingest_reserved_concurrency: int
    """-1: unreserved."""
    delivery_reserved_concurrency: int
    """-1: unreserved."""
    delivery_batch_size: int
    delivery_batch_window_seconds: int
    log_retention_days: int
    metrics_settings: str
    """The metrics definition both functions emit (components.aws.metrics), as JSON."""


def policy_document(statements: Sequence[PolicyDocument]) -> PolicyDocument:
    """An IAM policy document around `statements` (values may be Pulumi inputs)."""
    return {"Version": "2012-10-17", "Statement": list(statements)}


def log_statement(log_group_arn: pulumi.Input[str]) -> PolicyDocument:
    """Write to the streams of one log group (the group itself is created by the program)."""
    return {
        "Sid": "OwnLogGroup",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": [pulumi.Output.concat(log_group_arn, ":*")],
    }


def ingest_policy(
    queue_arn: pulumi.Input[str],
    secret_arns: Sequence[pulumi.Input[str]],
    ledger_table_arn: pulumi.Input[str],
    log_group_arn: pulumi.Input[str],
) -> PolicyDocument:
    """Ingest verifies signatures (two secrets), records what it accepts, and enqueues."""
    return policy_document(
        [
            {
                "Sid": "ReadVerificationSecrets",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": list(secret_arns),
            },
            {
                "Sid": "Enqueue",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": [queue_arn],
            },
            ledger_statement(ledger_table_arn, ACCEPTED_KIND),
            log_statement(log_group_arn),
        ]
    )


def delivery_policy(
    queue_arn: pulumi.Input[str],
    dead_letter_queue_arn: pulumi.Input[str],
    secret_arns: Sequence[pulumi.Input[str]],
    ledger_table_arn: pulumi.Input[str],
    log_group_arn: pulumi.Input[str],
) -> PolicyDocument:
    """Delivery consumes the queue (the event source mapping polls with this role), parks
    permanent failures in the dead-letter queue, reads the two credentials it writes with,
    and records what it delivered. Retries ride on the queue's own redelivery, so no
    visibility changes."""
    return policy_document(
        [
            {
                "Sid": "ReadUpstreamCredentials",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": list(secret_arns),
            },
            {
                "Sid": "ConsumeWorkQueue",
                "Effect": "Allow",
                "Action": [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                ],
                "Resource": [queue_arn],
            },
            {
                "Sid": "ParkPermanentFailures",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": [dead_letter_queue_arn],
            },
            ledger_statement(ledger_table_arn, DELIVERED_KIND),
            ledger_statement(ledger_table_arn, SETTLED_KIND),
            log_statement(log_group_arn),
        ]
    )


def env_flag(value: bool) -> str:
    """A yes/no setting as the bridge reads it from its environment."""
    return "true" if value else "false"


def ingest_environment(args: BridgeFunctionsArgs) -> dict[str, pulumi.Input[str]]:
    """Ingest's variables (docs/ARCHITECTURE.md): secret ARNs, never values. The mapping is
    the packaged `bridge_code/mapping.json` (built from `bridgeMapping`), so BRIDGE_MAPPING
    stays unset, and so does BRIDGE_ACCEPTANCE_WINDOW_SECONDS (the bridge's default)."""
    return {
        "QUEUE_URL": args.queue_url,
        "SEGMENT_SHARED_SECRET_ARN": args.segment_shared_secret_arn,
        "USERFLOW_WEBHOOK_SECRET_ARN": args.userflow_webhook_secret_arn,
        "SECRETS_TTL_SECONDS": str(args.secrets_ttl_seconds),
        "BRIDGE_LEDGER_TABLE": args.ledger_table_name,
        # From the stack, never from a request: only a batching destination's arrays may be
        # signed on their first element.
        "BRIDGE_SEGMENT_BATCHING": env_flag(args.segment_batching),
        SETTINGS_VARIABLE: args.metrics_settings,
    }


def delivery_environment(args: BridgeFunctionsArgs) -> dict[str, pulumi.Input[str]]:
    """Delivery's variables (docs/ARCHITECTURE.md): secret ARNs, never values."""
    return {
        "QUEUE_URL": args.queue_url,
        "DEAD_LETTER_QUEUE_URL": args.dead_letter_queue_url,
        "USERFLOW_API_KEY_ARN": args.userflow_api_key_arn,
        "SEGMENT_WRITE_KEY_ARN": args.segment_write_key_arn,
        "USERFLOW_API_URL": args.userflow_api_url,
        "SEGMENT_TRACKING_URL": args.segment_tracking_url,
        "SECRETS_TTL_SECONDS": str(args.secrets_ttl_seconds),
        "BRIDGE_LEDGER_TABLE": args.ledger_table_name,
        SETTINGS_VARIABLE: args.metrics_settings,
    }


@dataclass(frozen=True)
class _FunctionSpec:
    role: str
    handler: str
    timeout: int
    reserved_concurrency: int
    environment: dict[str, pulumi.Input[str]]


class BridgeFunctions(pulumi.ComponentResource):
    """Ingest (behind the API) and delivery (fed by the queue)."""

    ingest_function_name: pulumi.Output[str]
    ingest_function_arn: pulumi.Output[str]
    ingest_invoke_arn: pulumi.Output[str]
    ingest_log_group_name: pulumi.Output[str]
    delivery_function_name: pulumi.Output[str]
    delivery_log_group_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: BridgeFunctionsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(component_type("BridgeFunctions"), name, None, opts)
        self._name = name
        self._args = args
        code = pulumi.FileArchive(str(args.archive_path))

        ingest, ingest_logs, _ = self._function(
            _FunctionSpec("ingest", INGEST_HANDLER, args.ingest_timeout_seconds,
                          args.ingest_reserved_concurrency, ingest_environment(args)),
            code,
            lambda log_arn: ingest_policy(
                args.queue_arn,
                [args.segment_shared_secret_arn, args.userflow_webhook_secret_arn],
                args.ledger_table_arn,
                log_arn,
            ),
        )
        delivery, delivery_logs, delivery_policy_resource = self._function(
            _FunctionSpec("delivery", DELIVERY_HANDLER, args.delivery_timeout_seconds,
                          args.delivery_reserved_concurrency, delivery_environment(args)),
            code,
            lambda log_arn: delivery_policy(
                args.queue_arn,
                args.dead_letter_queue_arn,
                [args.userflow_api_key_arn, args.segment_write_key_arn],
                args.ledger_table_arn,
                log_arn,
            ),
        )

        # Poller concurrency within the function's reservation, so the mapping does not keep
        # invoking into throttles (SQS scaling config accepts 2..1000).
        scaling = (
            aws.lambda_.EventSourceMappingScalingConfigArgs(
                maximum_concurrency=args.delivery_reserved_concurrency
            )
            if args.delivery_reserved_concurrency >= 2
            else None
        )
        aws.lambda_.EventSourceMapping(
            f"{name}-delivery-queue",
            event_source_arn=args.queue_arn,
            function_name=delivery.arn,
            batch_size=args.delivery_batch_size,
            maximum_batching_window_in_seconds=args.delivery_batch_window_seconds,
            function_response_types=["ReportBatchItemFailures"],
            scaling_config=scaling,
            # AWS checks the role's SQS permissions when the mapping is created.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[delivery_policy_resource]),
        )

        self.ingest_function_name = ingest.name
        self.ingest_function_arn = ingest.arn
        self.ingest_invoke_arn = ingest.invoke_arn
        self.ingest_log_group_name = ingest_logs.name
        self.delivery_function_name = delivery.name
        self.delivery_log_group_name = delivery_logs.name
        self.register_outputs(
            {
                "ingest_function_name": self.ingest_function_name,
                "delivery_function_name": self.delivery_function_name,
                "ingest_log_group_name": self.ingest_log_group_name,
                "delivery_log_group_name": self.delivery_log_group_name,
            }
        )

    def _function(
        self,
        spec: _FunctionSpec,
        code: pulumi.Archive,
        policy_for: Callable[[pulumi.Output[str]], PolicyDocument],
    ) -> tuple[aws.lambda_.Function, aws.cloudwatch.LogGroup, aws.iam.RolePolicy]:
        """One function with its own role, inline policy and log group."""
        name, args = self._name, self._args
        function_name = f"{args.name_prefix}-{spec.role}"
        child = pulumi.ResourceOptions(parent=self)
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-{spec.role}-logs",
            # The name Lambda would use itself, so tools that assume it still find the logs.
            name=f"/aws/lambda/{function_name}",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-{spec.role}-role",
            name=f"{function_name}-role",
            assume_role_policy=json.dumps(LAMBDA_TRUST_POLICY),
            opts=child,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-{spec.role}-policy",
            name=f"{function_name}-least-privilege",
            role=role.id,
            policy=pulumi.Output.json_dumps(policy_for(log_group.arn)),
            opts=child,
        )
        function = aws.lambda_.Function(
            f"{name}-{spec.role}",
            name=function_name,
            role=role.arn,
            runtime=aws.lambda_.Runtime.PYTHON3D13,
            architectures=["arm64"],
            handler=spec.handler,
            code=code,
            memory_size=MEMORY_MB,
            timeout=spec.timeout,
            reserved_concurrent_executions=spec.reserved_concurrency,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=spec.environment),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format=LOG_FORMAT,
                log_group=log_group.name,
                application_log_level=APPLICATION_LOG_LEVEL,
                system_log_level=SYSTEM_LOG_LEVEL,
            ),
            # The first invocation must already be allowed to read its secrets and log.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, log_group]),
        )
        return function, log_group, policy
