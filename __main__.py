"""One environment of the Userflow <-> Segment integration: config -> bridge -> integration.

hosting=aws (staging, production): the bridge on AWS (`AwsBridge`), then the Segment and
Userflow resources pointed at its API (Userflow's webhooks at the ingest function's URL with
userflowIngress=functionUrl). hosting=local (the sandbox): no AWS resource at all,
the Segment and Userflow resources point at `bridgeUrl`. Exports never hold a secret value,
only where the secrets are.
"""

import pulumi

from components.aws.api import route_urls
from components.aws.bridge import AwsBridge, AwsBridgeArgs
from components.aws.packaging import write_bridge_archive
from components.aws.secrets import BridgeSecretValues
from components.config import StackConfig, load_config
from components.config_keys import PROJECT_ROOT
from components.integration import IntegrationArgs, SegmentUserflowIntegration


def integration_args(
    config: StackConfig, bridge_url: pulumi.Input[str],
    userflow_url: pulumi.Input[str] | None = None,
) -> IntegrationArgs:
    """The Segment/Userflow resources' settings for a bridge listening at `bridge_url` (and
    for Userflow's webhooks at `userflow_url` when they arrive elsewhere)."""
    return IntegrationArgs(
        environment=config.environment,
        bridge_url=bridge_url,
        userflow_bridge_url=userflow_url,
        app_source_id=config.segment_app_source_id,
        app_source_slug=config.segment_app_source_slug,
        create_app_source=config.create_app_source,
        event_types=list(config.segment_event_types),
        batching=config.segment_batching,
        batch_size=config.segment_batch_size,
        shared_secret_rotation=config.shared_secret_rotation,
        userflow_topics=list(config.userflow_topics or ()),
        adopt_userflow_source=config.adoption.userflow_source,
        adopt_destination=config.adoption.destination,
        adopt_destination_shared_secret=config.adoption.destination_shared_secret,
        adopt_userflow_webhook=config.adoption.userflow_webhook,
        write_key_rotation=config.write_key_rotation,
        userflow_webhook_rotation=config.userflow_webhook_rotation,
        rotation_overlap_seconds=config.rotation_overlap_seconds,
    )


def aws_bridge(config: StackConfig, opts: pulumi.ResourceOptions) -> AwsBridge:
    archive = write_bridge_archive(
        PROJECT_ROOT / "bridge_code", config.bridge_mapping, PROJECT_ROOT / "build"
    )
    return AwsBridge("bridge", AwsBridgeArgs.from_config(config, archive), opts)


config = load_config()
# Children inherit protection from their parent component: production refuses destroy.
protected = pulumi.ResourceOptions(protect=config.protect)

bridge = aws_bridge(config, protected) if config.hosting == "aws" else None
bridge_url: pulumi.Input[str] = bridge.bridge_url if bridge else config.bridge_url or ""
# The API's URL too, unless the ingest function's URL is Userflow's front door.
userflow_url = bridge.userflow_url if bridge else None
integration = SegmentUserflowIntegration(
    "integration",
    integration_args(config, bridge_url, userflow_url),
    # Segment and Userflow start delivering once their resources exist: only after the API
    # (routes, stage, invoke permission) and any function URL (with its permissions) are in
    # place.
    pulumi.ResourceOptions(protect=config.protect,
                           depends_on=bridge.front_doors if bridge else []),
)

if bridge:
    bridge.store_secret_values(
        BridgeSecretValues(
            userflow_api_key=config.userflow_api_key,
            segment_write_key=integration.write_key,
            segment_shared_secret=integration.bridge_shared_secrets,
            userflow_webhook_secret=integration.bridge_userflow_webhook_secrets,
        )
    )
    for export_name, output in bridge.exports.items():
        pulumi.export(export_name, output)

pulumi.export("bridgeUrl", bridge_url)
for export_name, url in route_urls(bridge_url, userflow_url).items():
    pulumi.export(export_name, url)
pulumi.export("appSourceId", integration.app_source_id)
pulumi.export("userflowSourceId", integration.userflow_source_id)
pulumi.export("userflowSourceSlug", integration.userflow_source_slug)
pulumi.export("destinationId", integration.destination_id)
pulumi.export("destinationSubscriptionId", integration.destination_subscription_id)
pulumi.export("userflowSubscriptionId", integration.userflow_subscription_id)
