"""The bridge on AWS as one component: secrets -> queue -> ledger -> functions -> API -> alarms,
and the dashboard that shows them; with `userflowIngress: functionUrl`, the ingest function's
URL as Userflow's front door instead of the API's `/userflow` route.

A component of components (the shape of pulumi/examples' aws-py-hub-and-spoke-network
`spoke.py`): the parts are children of `AwsBridge`, wired to each other here so the
program only says "an AWS bridge for this config".

Stacks deployed before `AwsBridge` existed hold the five parts at the stack's root. Each part
keeps its logical name and carries an alias to its root-level URN; the engine extends a
parent's aliases to its descendants, so such a stack updates in place and replaces nothing.

Two steps, because of a cycle between components (not between resources): the Segment and
Userflow resources need the bridge's URL, and three of the four secret values come from them.
So the bridge is built first and `store_secret_values` adds the values once they exist.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi

from components.aws.alarms import BridgeAlarms, BridgeAlarmsArgs
from components.aws.api import BridgeApi, BridgeApiArgs, api_routes, route_urls
from components.aws.dashboard import BridgeDashboard, BridgeDashboardArgs, DashboardSettings
from components.aws.function_url import UserflowFunctionUrl, UserflowFunctionUrlArgs
from components.aws.functions import BridgeFunctions, BridgeFunctionsArgs
from components.aws.ledger import BridgeLedger, BridgeLedgerArgs
from components.aws.metrics import BridgeMetricsDefinition
from components.aws.packaging import BridgeArchive
from components.aws.queue import BridgeQueue, BridgeQueueArgs
from components.aws.secrets import BridgeSecrets, BridgeSecretsArgs, BridgeSecretValues
from components.project import UserflowIngress, component_type

if TYPE_CHECKING:
    from components.config import StackConfig
    from components.ledger_capacity import LedgerCapacity


@dataclass(frozen=True)
class AwsBridgeArgs:
    """What the AWS bridge needs: the built zip and the stack's settings for its parts."""

    archive: BridgeArchive
    """The deterministic bridge zip, already written (components.aws.packaging)."""
    name_prefix: str
    """Prefix of every physical name (carries the environment)."""
    environment: str
    """The stack's environment: the value of the bridge metrics' environment dimension."""
    region: str | None
    """The stack's AWS region, where the dashboard's graphs read their metrics."""
    userflow_api_url: str
    """Where delivery writes to Userflow."""
    segment_tracking_url: str
    """Where delivery writes to Segment (its Tracking API)."""
    secret_recovery_window_days: int
    """0 deletes a secret at once (a stack can be rebuilt with the same names); 7-30 a grace."""
    secrets_ttl_seconds: int
    """How long the functions cache a secret's value."""
    segment_batching: bool
    """Whether the Segment destination batches (ingest's signature rule follows it)."""
    protect: bool
    """Whether the stack's resources refuse deletion (the ledger table's own protection)."""
    ledger_capacity: LedgerCapacity
    """The ledger table on demand, or provisioned with auto scaling."""
    ingest_timeout_seconds: int
    """Ingest's timeout; sizes the API's integration timeout."""
    delivery_timeout_seconds: int
    """Delivery's timeout; sizes the work queue's visibility timeout."""
    ingest_reserved_concurrency: int
    """Ingest's reserved concurrency; -1 leaves it on the account's unreserved pool."""
    delivery_reserved_concurrency: int
    """Delivery's reserved concurrency (-1: unreserved); 2 or more also caps the poller."""
    delivery_batch_size: int
    """Queue messages per delivery invocation."""
    delivery_batch_window_seconds: int
    """How long the queue poller gathers a batch."""
    max_receive_count: int
    """Receives before a message moves to the dead-letter queue."""
    log_retention_days: int
    """Retention of the functions' and the API's log groups."""
    api_throttle_burst_limit: int
    """The API stage's burst limit (requests)."""
    api_throttle_rate_limit: float
    """The API stage's steady limit (requests per second)."""
    userflow_ingress: UserflowIngress
    """Where Userflow's webhooks arrive: the API's `/userflow`, or the ingest function's URL."""
    alarm_topic_arn: str | None
    """SNS topic notified on alarm and recovery; None: alarms only show in the console."""
    alarm_dead_letter_threshold: int
    """Visible dead-letter messages that raise the alarm."""
    alarm_delivery_errors_threshold: int
    """Delivery invocation errors per period that raise the alarm."""
    alarm_api_5xx_rate_percent: float
    """Share of API requests answered 5xx (percent) that raises the alarm."""
    alarm_queue_age_seconds: int
    """Age of the work queue's oldest message (seconds) that raises the alarm."""
    alarm_ledger_throttled_threshold: int
    """Throttled ledger requests per period that raise the alarm (provisioned ledger only)."""
    alarm_period_seconds: int
    """The alarms' metric period."""
    alarm_evaluation_periods: int
    """Periods over which an alarm's threshold must be met."""

    @classmethod
    def from_config(cls, config: StackConfig, archive: BridgeArchive) -> AwsBridgeArgs:
        """The settings read from the stack's config: every field but the archive is named
        exactly as on `StackConfig`, so a field added here is read from there."""
        settings: dict[str, Any] = {
            field.name: getattr(config, field.name)
            for field in fields(cls)
            if field.name != "archive"
        }
        return cls(archive=archive, **settings)


# Where each part sat before it was a child of AwsBridge: at the stack's root.
MOVED_FROM_ROOT = pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)


class AwsBridge(pulumi.ComponentResource):
    """The bridge on AWS: an HTTPS API in front of ingest, a queue, delivery, alarms."""

    bridge_url: pulumi.Output[str]
    """The API's base URL; `route_urls` appends the routes."""
    userflow_url: pulumi.Output[str]
    """Where Userflow's webhooks go, `/userflow` appended: the API's base URL, or the ingest
    function's URL (without its trailing slash)."""
    function_url: UserflowFunctionUrl | None
    """Userflow's front door with `userflowIngress: functionUrl`; None: the API is."""
    front_doors: list[pulumi.Resource]
    """What must exist before Segment and Userflow are told to deliver: the API, and the
    function URL with its permissions when Userflow's webhooks arrive through it."""
    exports: dict[str, pulumi.Output[Any]]
    """The stack outputs of the AWS side, keyed by export name (never a secret value)."""

    def __init__(
        self, name: str, args: AwsBridgeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(component_type("AwsBridge"), name, None, opts)
        part = pulumi.ResourceOptions(parent=self, aliases=[MOVED_FROM_ROOT])
        self.metrics = BridgeMetricsDefinition(args.environment)
        self.secrets = BridgeSecrets(
            "secrets", BridgeSecretsArgs(args.name_prefix, args.secret_recovery_window_days), part
        )
        self.queue = BridgeQueue(
            "queue",
            BridgeQueueArgs(args.name_prefix, args.delivery_timeout_seconds,
                            args.max_receive_count),
            part,
        )
        # New with the ledger, so no former root-level URN to alias.
        self.ledger = BridgeLedger(
            "ledger", BridgeLedgerArgs(args.name_prefix, args.protect, args.ledger_capacity),
            pulumi.ResourceOptions(parent=self),
        )
        self.functions = BridgeFunctions("functions", self._functions_args(args), part)
        self.api = BridgeApi(
            "api",
            BridgeApiArgs(
                name_prefix=args.name_prefix,
                ingest_function_name=self.functions.ingest_function_name,
                ingest_invoke_arn=self.functions.ingest_invoke_arn,
                ingest_timeout_seconds=args.ingest_timeout_seconds,
                throttle_burst_limit=args.api_throttle_burst_limit,
                throttle_rate_limit=args.api_throttle_rate_limit,
                log_retention_days=args.log_retention_days,
                routes=api_routes(args.userflow_ingress),
            ),
            part,
        )
        # Only with functionUrl, and new: no former root-level URN to claim.
        self.function_url = (
            UserflowFunctionUrl(
                "userflow-ingress",
                UserflowFunctionUrlArgs(args.name_prefix, self.functions.ingest_function_name),
                pulumi.ResourceOptions(parent=self),
            )
            if args.userflow_ingress == "functionUrl"
            else None
        )
        self.alarms = BridgeAlarms("alarms", self._alarms_args(args), part)
        # Added after the parts moved under AwsBridge: no former root-level URN to claim.
        self.dashboard = BridgeDashboard(
            "dashboard", self._dashboard_args(args), pulumi.ResourceOptions(parent=self))
        self.bridge_url = self.api.bridge_url
        self.userflow_url = self.function_url.base_url if self.function_url else self.bridge_url
        self.front_doors = [self.api, *([self.function_url] if self.function_url else [])]
        self.exports = {
            "userflowApiKeySecretArn": self.secrets.userflow_api_key_arn,
            "segmentWriteKeySecretArn": self.secrets.segment_write_key_arn,
            "segmentSharedSecretArn": self.secrets.segment_shared_secret_arn,
            "userflowWebhookSecretArn": self.secrets.userflow_webhook_secret_arn,
            "queueUrl": self.queue.queue_url,
            "deadLetterQueueUrl": self.queue.dead_letter_queue_url,
            "ledgerTableName": self.ledger.table_name,
            "ingestLogGroupName": self.functions.ingest_log_group_name,
            "deliveryLogGroupName": self.functions.delivery_log_group_name,
            "apiAccessLogGroupName": self.api.access_log_group_name,
            "dashboardName": self.dashboard.dashboard_name,
            "bridgeZipSha256": pulumi.Output.from_input(args.archive.sha256),
        }
        self.register_outputs(
            {"bridgeUrl": self.bridge_url, **route_urls(self.bridge_url, self.userflow_url),
             **self.exports}
        )

    def store_secret_values(self, values: BridgeSecretValues) -> None:
        """Store the four values (each kept a Pulumi secret) once their sources exist."""
        self.secrets.store_values(values)

    def _functions_args(self, args: AwsBridgeArgs) -> BridgeFunctionsArgs:
        return BridgeFunctionsArgs(
            name_prefix=args.name_prefix,
            # Relative to the project (Pulumi runs programs from there), so the state does
            # not depend on where the repository is checked out.
            archive_path=Path(os.path.relpath(args.archive.path)),
            queue_arn=self.queue.queue_arn,
            queue_url=self.queue.queue_url,
            dead_letter_queue_arn=self.queue.dead_letter_queue_arn,
            dead_letter_queue_url=self.queue.dead_letter_queue_url,
            segment_shared_secret_arn=self.secrets.segment_shared_secret_arn,
            userflow_webhook_secret_arn=self.secrets.userflow_webhook_secret_arn,
            userflow_api_key_arn=self.secrets.userflow_api_key_arn,
            segment_write_key_arn=self.secrets.segment_write_key_arn,
            ledger_table_name=self.ledger.table_name,
            ledger_table_arn=self.ledger.table_arn,
            segment_batching=args.segment_batching,
            userflow_api_url=args.userflow_api_url,
            segment_tracking_url=args.segment_tracking_url,
            secrets_ttl_seconds=args.secrets_ttl_seconds,
            ingest_timeout_seconds=args.ingest_timeout_seconds,
            delivery_timeout_seconds=args.delivery_timeout_seconds,
            ingest_reserved_concurrency=args.ingest_reserved_concurrency,
            delivery_reserved_concurrency=args.delivery_reserved_concurrency,
            delivery_batch_size=args.delivery_batch_size,
            delivery_batch_window_seconds=args.delivery_batch_window_seconds,
            log_retention_days=args.log_retention_days,
            metrics_settings=self.metrics.settings_json(),
        )

    def _alarms_args(self, args: AwsBridgeArgs) -> BridgeAlarmsArgs:
        return BridgeAlarmsArgs(
            name_prefix=args.name_prefix,
            queue_name=self.queue.queue_name,
            dead_letter_queue_name=self.queue.dead_letter_queue_name,
            delivery_function_name=self.functions.delivery_function_name,
            api_id=self.api.api_id,
            stage_name=self.api.stage_name,
            dead_letter_threshold=args.alarm_dead_letter_threshold,
            delivery_errors_threshold=args.alarm_delivery_errors_threshold,
            api_5xx_rate_percent=args.alarm_api_5xx_rate_percent,
            queue_age_seconds=args.alarm_queue_age_seconds,
            # On demand there is no provisioned capacity to exceed: no throttling alarm.
            ledger_table_name=(self.ledger.table_name if args.ledger_capacity.provisioned
                               else None),
            ledger_throttled_threshold=args.alarm_ledger_throttled_threshold,
            period_seconds=args.alarm_period_seconds,
            evaluation_periods=args.alarm_evaluation_periods,
            topic_arn=args.alarm_topic_arn,
            userflow_function_name=(
                self.functions.ingest_function_name if self.function_url else None),
        )

    def _dashboard_args(self, args: AwsBridgeArgs) -> BridgeDashboardArgs:
        if args.region is None:
            raise ValueError("the AWS bridge's dashboard needs the stack's aws:region")
        return BridgeDashboardArgs(
            definition=self.metrics,
            settings=DashboardSettings(args.alarm_period_seconds, args.alarm_queue_age_seconds),
            region=args.region,
            name_prefix=args.name_prefix,
            queue_name=self.queue.queue_name,
            dead_letter_queue_name=self.queue.dead_letter_queue_name,
            ingest_function_name=self.functions.ingest_function_name,
            delivery_function_name=self.functions.delivery_function_name,
            api_id=self.api.api_id,
            stage_name=self.api.stage_name,
            alarm_arns=self.alarms.alarm_arns,
            userflow_function_url=self.function_url is not None,
        )
