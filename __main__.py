"""One environment of the Userflow <-> Segment integration: config -> components -> exports.

hosting=aws (staging, production): the bridge on AWS (secrets, queue, functions, API,
alarms), then the Segment and Userflow resources pointed at the API. hosting=local (the
sandbox): no AWS resource at all, the Segment and Userflow resources point at `bridgeUrl`.
Exports never hold a secret value, only where the secrets are.
"""

import os
from pathlib import Path

import pulumi

from components.aws.alarms import BridgeAlarms, BridgeAlarmsArgs
from components.aws.api import BridgeApi, BridgeApiArgs, route_urls
from components.aws.functions import BridgeFunctions, BridgeFunctionsArgs
from components.aws.packaging import write_bridge_archive
from components.aws.queue import BridgeQueue, BridgeQueueArgs
from components.aws.secrets import BridgeSecrets, BridgeSecretsArgs, BridgeSecretValues
from components.config import PROJECT_ROOT, StackConfig, load_config
from components.integration import IntegrationArgs, SegmentUserflowIntegration


def integration_args(config: StackConfig, bridge_url: pulumi.Input[str]) -> IntegrationArgs:
    """The Segment/Userflow resources' settings for a bridge listening at `bridge_url`."""
    return IntegrationArgs(
        environment=config.environment,
        bridge_url=bridge_url,
        app_source_id=config.segment_app_source_id,
        app_source_slug=config.segment_app_source_slug,
        create_app_source=config.create_app_source,
        event_types=list(config.segment_event_types),
        batching=config.segment_batching,
        batch_size=config.segment_batch_size,
        shared_secret_rotation=config.shared_secret_rotation,
        userflow_topics=list(config.userflow_topics or ()),
    )


def export_integration(integration: SegmentUserflowIntegration) -> None:
    pulumi.export("appSourceId", integration.app_source_id)
    pulumi.export("userflowSourceId", integration.userflow_source_id)
    pulumi.export("userflowSourceSlug", integration.userflow_source_slug)
    pulumi.export("destinationId", integration.destination_id)
    pulumi.export("destinationSubscriptionId", integration.destination_subscription_id)
    pulumi.export("userflowSubscriptionId", integration.userflow_subscription_id)


config = load_config()
# Children inherit protection from their parent component: production refuses destroy.
protected = pulumi.ResourceOptions(protect=config.protect)

if config.hosting == "local":
    bridge_url: pulumi.Input[str] = config.bridge_url or ""
    integration = SegmentUserflowIntegration(
        "integration", integration_args(config, bridge_url), protected
    )
else:
    archive = write_bridge_archive(
        PROJECT_ROOT / "bridge_code", config.bridge_mapping, PROJECT_ROOT / "build"
    )
    secrets = BridgeSecrets(
        "secrets",
        BridgeSecretsArgs(config.name_prefix, config.secret_recovery_window_days),
        protected,
    )
    queue = BridgeQueue(
        "queue",
        BridgeQueueArgs(config.name_prefix, config.delivery_timeout_seconds,
                        config.max_receive_count),
        protected,
    )
    functions = BridgeFunctions(
        "functions",
        BridgeFunctionsArgs(
            name_prefix=config.name_prefix,
            # Relative to the project (Pulumi runs programs from there), so the state does
            # not depend on where the repository is checked out.
            archive_path=Path(os.path.relpath(archive.path)),
            queue_arn=queue.queue_arn,
            queue_url=queue.queue_url,
            dead_letter_queue_arn=queue.dead_letter_queue_arn,
            dead_letter_queue_url=queue.dead_letter_queue_url,
            segment_shared_secret_arn=secrets.segment_shared_secret_arn,
            userflow_webhook_secret_arn=secrets.userflow_webhook_secret_arn,
            userflow_api_key_arn=secrets.userflow_api_key_arn,
            segment_write_key_arn=secrets.segment_write_key_arn,
            userflow_api_url=config.userflow_api_url,
            segment_tracking_url=config.segment_tracking_url,
            secrets_ttl_seconds=config.secrets_ttl_seconds,
            ingest_timeout_seconds=config.ingest_timeout_seconds,
            delivery_timeout_seconds=config.delivery_timeout_seconds,
            ingest_reserved_concurrency=config.ingest_reserved_concurrency,
            delivery_reserved_concurrency=config.delivery_reserved_concurrency,
            delivery_batch_size=config.delivery_batch_size,
            delivery_batch_window_seconds=config.delivery_batch_window_seconds,
            log_retention_days=config.log_retention_days,
        ),
        protected,
    )
    api = BridgeApi(
        "api",
        BridgeApiArgs(
            name_prefix=config.name_prefix,
            ingest_function_name=functions.ingest_function_name,
            ingest_invoke_arn=functions.ingest_invoke_arn,
            ingest_timeout_seconds=config.ingest_timeout_seconds,
            throttle_burst_limit=config.api_throttle_burst_limit,
            throttle_rate_limit=config.api_throttle_rate_limit,
            log_retention_days=config.log_retention_days,
        ),
        protected,
    )
    bridge_url = api.bridge_url
    # Segment and Userflow start delivering once their resources exist: only after the API
    # (routes, stage, invoke permission) is in place.
    integration = SegmentUserflowIntegration(
        "integration",
        integration_args(config, bridge_url),
        pulumi.ResourceOptions(protect=config.protect, depends_on=[api]),
    )
    secrets.store_values(
        BridgeSecretValues(
            userflow_api_key=config.userflow_api_key,
            segment_write_key=integration.write_key,
            segment_shared_secret=integration.shared_secret,
            userflow_webhook_secret=integration.userflow_webhook_secret,
        )
    )
    BridgeAlarms(
        "alarms",
        BridgeAlarmsArgs(
            name_prefix=config.name_prefix,
            dead_letter_queue_name=queue.dead_letter_queue_name,
            delivery_function_name=functions.delivery_function_name,
            api_id=api.api_id,
            stage_name=api.stage_name,
            dead_letter_threshold=config.alarm_dead_letter_threshold,
            delivery_errors_threshold=config.alarm_delivery_errors_threshold,
            api_5xx_rate_percent=config.alarm_api_5xx_rate_percent,
            period_seconds=config.alarm_period_seconds,
            evaluation_periods=config.alarm_evaluation_periods,
            topic_arn=config.alarm_topic_arn,
        ),
        protected,
    )
    pulumi.export("userflowApiKeySecretArn", secrets.userflow_api_key_arn)
    pulumi.export("segmentWriteKeySecretArn", secrets.segment_write_key_arn)
    pulumi.export("segmentSharedSecretArn", secrets.segment_shared_secret_arn)
    pulumi.export("userflowWebhookSecretArn", secrets.userflow_webhook_secret_arn)
    pulumi.export("queueUrl", queue.queue_url)
    pulumi.export("deadLetterQueueUrl", queue.dead_letter_queue_url)
    pulumi.export("ingestLogGroupName", functions.ingest_log_group_name)
    pulumi.export("deliveryLogGroupName", functions.delivery_log_group_name)
    pulumi.export("apiAccessLogGroupName", api.access_log_group_name)
    pulumi.export("bridgeZipSha256", archive.sha256)

pulumi.export("bridgeUrl", bridge_url)
for export_name, url in route_urls(bridge_url).items():
    pulumi.export(export_name, url)
export_integration(integration)
