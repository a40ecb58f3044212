"""The Segment and Userflow side of one environment, wired to the bridge.

Replaces Userflow's three manual setup steps: a Segment HTTP API source for the events Userflow
sends (``userflow-<environment>``), a Webhooks (Actions) destination on the app's source that
sends the app's events to the bridge, and a Userflow webhook subscription that sends Userflow's
own events to the bridge.

The app's source is given by id, or by slug (resolved by a ``SegmentSourceLookup`` resource, so
the Segment token is only ever read by the providers, never by the Pulumi program), or, in the
sandbox only, created here as ``app-<environment>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.adoption import Adopt
from components.project import component_type
from components.rotation import DEFAULT_OVERLAP_SECONDS
from components.segment_destination import SegmentWebhookDestination, SegmentWebhookDestinationArgs
from components.segment_destination_payloads import DEFAULT_EVENT_TYPES
from components.segment_source import SegmentSource, SegmentSourceArgs, SegmentSourceLookup
from components.userflow_webhook import (
    DEFAULT_TOPICS,
    UserflowWebhookSubscription,
    UserflowWebhookSubscriptionArgs,
)

COMPONENT_TYPE = component_type("Integration")


@dataclass(frozen=True)
class IntegrationArgs:
    """How one environment's Segment and Userflow objects are wired to its bridge."""

    environment: str  # staging | production | local
    bridge_url: pulumi.Input[str]  # https://… (http://127.0.0.1:… only for local)
    # Where Userflow's webhooks go when not to bridge_url (the ingest function's URL on AWS,
    # without its trailing slash); the webhook appends /userflow to it.
    userflow_bridge_url: pulumi.Input[str] | None = None
    app_source_id: pulumi.Input[str] | None = None  # the app's existing Segment source, or…
    app_source_slug: str | None = None  # …its slug (looked up), or…
    create_app_source: bool = False  # …sandbox only: create an "app" source too
    # Empty lists and the values below mean the destination's and the webhook's own defaults
    # (their args dataclasses are where those defaults are written).
    event_types: list[str] = field(default_factory=list)
    batching: bool = SegmentWebhookDestinationArgs.batching
    batch_size: int = SegmentWebhookDestinationArgs.batch_size
    shared_secret_rotation: int = SegmentWebhookDestinationArgs.shared_secret_rotation
    userflow_topics: list[str] = field(default_factory=list)
    # Moving off a hand-made setup (components/adoption.py): the existing objects to take over
    # in place at create instead of creating new ones beside them.
    adopt_userflow_source: Adopt | None = None  # the hand-made Userflow HTTP API source
    adopt_destination: Adopt | None = None  # the hand-made Webhooks (Actions) destination…
    adopt_destination_shared_secret: pulumi.Input[str] | None = None  # …and what it signs with
    adopt_userflow_webhook: Adopt | None = None  # the hand-made Userflow webhook subscription
    # Bump to rotate the Userflow source's write key / the Userflow webhook secret.
    write_key_rotation: int = SegmentSourceArgs.write_key_rotation
    userflow_webhook_rotation: int = UserflowWebhookSubscriptionArgs.secret_rotation
    # The wait between a rotation's steps (at least the bridge's secret cache TTL).
    rotation_overlap_seconds: int = DEFAULT_OVERLAP_SECONDS


def userflow_source_slug(environment: str) -> str:
    return f"userflow-{environment}"


def app_source_slug(environment: str) -> str:
    return f"app-{environment}"


class SegmentUserflowIntegration(pulumi.ComponentResource):
    """The Userflow source, the bridge destination and the Userflow webhook of one stack."""

    app_source_id: pulumi.Output[str]
    userflow_source_id: pulumi.Output[str]
    userflow_source_slug: pulumi.Output[str]
    write_key: pulumi.Output[str]
    destination_id: pulumi.Output[str]
    destination_subscription_id: pulumi.Output[str]
    shared_secret: pulumi.Output[str]
    userflow_subscription_id: pulumi.Output[str]
    userflow_webhook_secret: pulumi.Output[str]
    # What the bridge's secrets hold: the secret in use first, then any other it must still
    # accept while a rotation overlaps (comma-separated).
    bridge_shared_secrets: pulumi.Output[str]
    bridge_userflow_webhook_secrets: pulumi.Output[str]

    def __init__(
        self, name: str, args: IntegrationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        environment = args.environment

        self.app_source_id = self._app_source_id(name, args, child)

        userflow_source = SegmentSource(
            f"{name}-userflow-source",
            SegmentSourceArgs(
                slug=userflow_source_slug(environment),
                name=f"Userflow ({environment})",
                adopt=args.adopt_userflow_source,
                write_key_rotation=args.write_key_rotation,
                rotation_overlap_seconds=args.rotation_overlap_seconds,
            ),
            child,
        )
        destination = SegmentWebhookDestination(
            f"{name}-bridge-destination",
            SegmentWebhookDestinationArgs(
                source_id=self.app_source_id,
                bridge_url=args.bridge_url,
                event_types=list(args.event_types) or list(DEFAULT_EVENT_TYPES),
                batching=args.batching,
                batch_size=args.batch_size,
                shared_secret_rotation=args.shared_secret_rotation,
                rotation_overlap_seconds=args.rotation_overlap_seconds,
                # Per environment, so two stacks sharing an app source never adopt each other's.
                name=f"Userflow bridge ({environment})",
                adopt=args.adopt_destination,
                adopt_shared_secret=args.adopt_destination_shared_secret,
            ),
            child,
        )
        webhook = UserflowWebhookSubscription(
            f"{name}-userflow-webhook",
            UserflowWebhookSubscriptionArgs(
                bridge_url=(args.bridge_url if args.userflow_bridge_url is None
                            else args.userflow_bridge_url),
                topics=list(args.userflow_topics) or list(DEFAULT_TOPICS),
                adopt=args.adopt_userflow_webhook,
                secret_rotation=args.userflow_webhook_rotation,
                rotation_overlap_seconds=args.rotation_overlap_seconds,
            ),
            child,
        )

        self.userflow_source_id = userflow_source.source_id
        self.userflow_source_slug = userflow_source.slug
        self.write_key = pulumi.Output.secret(userflow_source.write_key)
        self.destination_id = destination.destination_id
        self.destination_subscription_id = destination.subscription_id
        self.shared_secret = pulumi.Output.secret(destination.shared_secret)
        self.userflow_subscription_id = webhook.subscription_id
        self.userflow_webhook_secret = pulumi.Output.secret(webhook.secret)
        self.bridge_shared_secrets = pulumi.Output.secret(destination.accepted_shared_secrets)
        self.bridge_userflow_webhook_secrets = pulumi.Output.secret(webhook.accepted_secrets)
        self.register_outputs(
            {
                "app_source_id": self.app_source_id,
                "userflow_source_id": self.userflow_source_id,
                "userflow_source_slug": self.userflow_source_slug,
                "write_key": self.write_key,
                "destination_id": self.destination_id,
                "destination_subscription_id": self.destination_subscription_id,
                "shared_secret": self.shared_secret,
                "userflow_subscription_id": self.userflow_subscription_id,
                "userflow_webhook_secret": self.userflow_webhook_secret,
                "bridge_shared_secrets": self.bridge_shared_secrets,
                "bridge_userflow_webhook_secrets": self.bridge_userflow_webhook_secrets,
            }
        )

    @staticmethod
    def _app_source_id(
        name: str, args: IntegrationArgs, child: pulumi.ResourceOptions
    ) -> pulumi.Output[str]:
        if args.create_app_source:
            app_source = SegmentSource(
                f"{name}-app-source",
                SegmentSourceArgs(
                    slug=app_source_slug(args.environment), name=f"App ({args.environment})"
                ),
                child,
            )
            return app_source.source_id
        if args.app_source_id:
            return pulumi.Output.from_input(args.app_source_id)
        if args.app_source_slug:
            lookup = SegmentSourceLookup(f"{name}-app-source-lookup", args.app_source_slug, child)
            return lookup.source_id
        raise ValueError(
            "the app's Segment source is not set: give app_source_id or app_source_slug "
            "(or create_app_source in the sandbox)"
        )
