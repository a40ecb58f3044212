"""The Webhooks (Actions) destination on the app's Segment source, with its Send subscription.

Segment delivers the app's events to ``<bridge>/segment``, signed with ``settings.sharedSecret``.
The provider generates that secret (a secret output) and keeps it across updates; it changes only
when ``shared_secret_rotation`` changes (bump the number to rotate), or when a refresh shows the
secret was removed out of band.

State refers to the provider class by this module path: do not move or rename it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, UpdateResult

from components.api_http import NotFoundError, check_base_url
from components.project import SEGMENT_ROUTE_PATH
from components.provider import ConfiguredProvider, OwnedResource, is_unknown, unknown
from components.segment_api import (
    BATCH_SIZE_RANGE,
    WEBHOOKS_ACTIONS_METADATA_ID,
    WEBHOOKS_SEND_ACTION_ID,
    SegmentClient,
    is_masked,
)

# The event types of the Segment Spec (https://segment.com/docs/connections/spec/): the one list
# the stack config and the destination's trigger both check against.
SEGMENT_EVENT_TYPES = ("identify", "track", "page", "screen", "group", "alias")
# What Userflow reads from Segment: users (identify), their events (track), groups (group).
DEFAULT_EVENT_TYPES = ("identify", "track", "group")
SEND_METHOD = "POST"
DEFAULT_DATA_MAPPING = {"@path": "$."}  # the whole event, as the bridge expects
DEFAULT_NAME = "Userflow bridge"
DEFAULT_SUBSCRIPTION_NAME = "Send to the Userflow bridge"
SHARED_SECRET_BYTES = 32

# The subscription settings this resource manages; any other setting (e.g. headers added in the
# Segment app) is left untouched, and a managed one no longer wanted is sent as null.
MANAGED_SEND_SETTINGS = ("url", "method", "enable_batching", "batch_size", "data")

DESTINATION_IDENTITY = ("source_id", "metadata_id", "action_id")
DESTINATION_MUTABLE = (
    "name",
    "enabled",
    "subscription_name",
    "trigger",
    *MANAGED_SEND_SETTINGS,
    "shared_secret_rotation",
)
DESTINATION_OUTPUTS = ("destination_id", "subscription_id", "shared_secret")


@dataclass(frozen=True)
class SegmentWebhookDestinationArgs:
    """A Webhooks (Actions) destination that sends the app's events to the bridge."""

    source_id: pulumi.Input[str]  # the app's source; another source replaces the destination
    bridge_url: pulumi.Input[str]  # https://… (http://127.0.0.1:… only for the local stack)
    event_types: list[str] = field(default_factory=lambda: list(DEFAULT_EVENT_TYPES))
    batching: bool = True  # Pulumi.yaml's segmentBatching default says why
    batch_size: int = 100  # events per delivery when batching (1..4000)
    shared_secret_rotation: int = 0  # bump to generate a new shared secret
    name: str = DEFAULT_NAME
    enabled: bool = True
    subscription_name: str = DEFAULT_SUBSCRIPTION_NAME


# -- payload <-> state (pure) ------------------------------------------------------------------


def destination_inputs(args: SegmentWebhookDestinationArgs) -> dict[str, Any]:
    return {
        "source_id": args.source_id,
        "bridge_url": args.bridge_url,
        "event_types": list(args.event_types),
        "batching": args.batching,
        "batch_size": args.batch_size,
        "shared_secret_rotation": args.shared_secret_rotation,
        "name": args.name,
        "enabled": args.enabled,
        "subscription_name": args.subscription_name,
        "metadata_id": WEBHOOKS_ACTIONS_METADATA_ID,
        "action_id": WEBHOOKS_SEND_ACTION_ID,
    }


def _defaults() -> dict[str, Any]:
    """Every optional input's default, read off the args dataclass (their one place)."""
    blank = destination_inputs(SegmentWebhookDestinationArgs(source_id="", bridge_url=""))
    return {key: value for key, value in blank.items() if key not in ("source_id", "bridge_url")}


DEFAULTS: dict[str, Any] = _defaults()


def with_destination_defaults(news: Mapping[str, Any]) -> dict[str, Any]:
    inputs = dict(news)
    for key, value in DEFAULTS.items():
        if inputs.get(key) is None:
            inputs[key] = value
    return inputs


def fql_trigger(event_types: list[str]) -> str:
    """The FQL trigger for these event types, in a canonical order so reordering isn't drift."""
    wanted = [t for t in SEGMENT_EVENT_TYPES if t in set(event_types)]
    return " or ".join(f'type = "{t}"' for t in wanted)


def bridge_endpoint(bridge_url: str) -> str:
    return bridge_url.rstrip("/") + SEGMENT_ROUTE_PATH


def send_settings(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The Send action's managed settings; batch_size only exists while batching is on."""
    url = inputs["bridge_url"]
    settings: dict[str, Any] = {
        "url": unknown() if is_unknown(url) else bridge_endpoint(url),
        "method": SEND_METHOD,
        "enable_batching": bool(inputs["batching"]),
        "data": dict(DEFAULT_DATA_MAPPING),
    }
    if inputs["batching"]:
        settings["batch_size"] = int(inputs["batch_size"])
    return settings


def desired_view(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What the inputs ask for, in the same shape as the outputs (so diff is one comparison)."""
    event_types = inputs["event_types"]
    view: dict[str, Any] = {
        "source_id": inputs["source_id"],
        "metadata_id": inputs["metadata_id"],
        "action_id": inputs["action_id"],
        "name": inputs["name"],
        "enabled": bool(inputs["enabled"]),
        "subscription_name": inputs["subscription_name"],
        "trigger": unknown() if is_unknown(event_types) else fql_trigger(event_types),
        "shared_secret_rotation": inputs["shared_secret_rotation"],
    }
    view.update(dict.fromkeys(MANAGED_SEND_SETTINGS))
    view.update(send_settings(inputs))
    return view


def subscription_settings_patch(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Managed settings to send: the wanted ones, and null for managed ones no longer wanted."""
    wanted = send_settings(inputs)
    return {key: wanted.get(key) for key in MANAGED_SEND_SETTINGS}


def create_destination_body(inputs: Mapping[str, Any], shared_secret: str) -> dict[str, Any]:
    return {
        "sourceId": inputs["source_id"],
        "metadataId": inputs["metadata_id"],
        "name": inputs["name"],
        "enabled": bool(inputs["enabled"]),
        "settings": {"sharedSecret": shared_secret},
    }


def update_destination_body(inputs: Mapping[str, Any], shared_secret: str) -> dict[str, Any]:
    # Settings PATCH merges: only sharedSecret is managed, other settings stay as they are.
    return {
        "name": inputs["name"],
        "enabled": bool(inputs["enabled"]),
        "settings": {"sharedSecret": shared_secret},
    }


def create_subscription_body(inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": inputs["subscription_name"],
        "actionId": inputs["action_id"],
        "trigger": fql_trigger(inputs["event_types"]),
        "enabled": True,
        "settings": send_settings(inputs),
    }


def update_subscription_input(inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": inputs["subscription_name"],
        "trigger": fql_trigger(inputs["event_types"]),
        "enabled": True,
        "settings": subscription_settings_patch(inputs),
    }


def observed_shared_secret(destination: Mapping[str, Any], known: str | None) -> str | None:
    """The shared secret as far as a read can tell: a masked value means "unchanged"."""
    value = (destination.get("settings") or {}).get("sharedSecret")
    if value is None or value == "":
        return None
    if is_masked(value):
        return known
    return str(value)


def destination_state(
    destination: Mapping[str, Any],
    subscription: Mapping[str, Any] | None,
    shared_secret: str | None,
    rotation: Any,
) -> dict[str, Any]:
    """The outputs, from a ``DestinationV1`` and its Send ``DestinationSubscription``."""
    sub_settings: Mapping[str, Any] = (subscription or {}).get("settings") or {}
    state: dict[str, Any] = {
        "destination_id": destination["id"],
        "subscription_id": subscription["id"] if subscription else None,
        "shared_secret": shared_secret,
        "shared_secret_rotation": rotation,
        "source_id": destination["sourceId"],
        "metadata_id": (destination.get("metadata") or {}).get("id"),
        "action_id": subscription["actionId"] if subscription else WEBHOOKS_SEND_ACTION_ID,
        "name": destination.get("name"),
        "enabled": bool(destination.get("enabled")),
        "subscription_name": subscription.get("name") if subscription else None,
        "trigger": subscription.get("trigger") if subscription else None,
    }
    for key in MANAGED_SEND_SETTINGS:
        state[key] = sub_settings.get(key)
    return state


def new_shared_secret() -> str:
    return secrets.token_hex(SHARED_SECRET_BYTES)


def validate_destination_inputs(inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    failures: list[tuple[str, str]] = []
    source_id = inputs.get("source_id")
    if not is_unknown(source_id) and (not isinstance(source_id, str) or not source_id):
        failures.append(("source_id", "source_id must be the id of the app's Segment source"))
    bridge_url = inputs.get("bridge_url")
    if not is_unknown(bridge_url):
        problem = (
            check_base_url(bridge_url, "bridge_url")
            if isinstance(bridge_url, str)
            else "bridge_url must be a URL string"
        )
        if problem:
            failures.append(("bridge_url", problem))
    event_types = inputs.get("event_types")
    if not is_unknown(event_types):
        if not isinstance(event_types, list) or not event_types:
            failures.append(
                ("event_types", f"event_types must list some of {list(SEGMENT_EVENT_TYPES)}")
            )
        else:
            unknown = [t for t in event_types if t not in SEGMENT_EVENT_TYPES]
            if unknown:
                failures.append(
                    (
                        "event_types",
                        f"unknown event type(s) {unknown}: use {list(SEGMENT_EVENT_TYPES)}",
                    )
                )
    batch_size = inputs.get("batch_size")
    low, high = BATCH_SIZE_RANGE
    if not is_unknown(batch_size) and (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int | float)
        or int(batch_size) != batch_size
        or not low <= batch_size <= high
    ):
        failures.append(("batch_size", f"batch_size must be a whole number from {low} to {high}"))
    rotation = inputs.get("shared_secret_rotation")
    if not is_unknown(rotation) and (
        isinstance(rotation, bool) or not isinstance(rotation, int | float) or rotation < 0
    ):
        failures.append(("shared_secret_rotation", "shared_secret_rotation must be a number >= 0"))
    for key in ("name", "subscription_name"):
        value = inputs.get(key)
        if not is_unknown(value) and (not isinstance(value, str) or not value.strip()):
            failures.append((key, f"{key} must be a non-empty name"))
    return failures


# -- provider --------------------------------------------------------------------------------


class SegmentWebhookDestinationProvider(ConfiguredProvider[SegmentClient]):
    """CRUD of the Webhooks (Actions) destination and its Send subscription."""

    client_type = SegmentClient
    with_defaults = staticmethod(with_destination_defaults)
    validate = staticmethod(validate_destination_inputs)
    desired_view = staticmethod(desired_view)
    identity = DESTINATION_IDENTITY
    mutable = DESTINATION_MUTABLE
    # A refresh that found the subscription or the secret gone: update recreates them.
    regenerated = ("subscription_id", "shared_secret")

    def delete_before_replace(self, replaces: list[str]) -> bool:
        # On another source the new destination can come first. Otherwise create would adopt
        # the very destination about to be deleted, so the old one has to go first.
        return bool(replaces) and replaces != ["source_id"]

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = with_destination_defaults(props)
        client = self.client()
        shared_secret = new_shared_secret()
        # Adopt what an interrupted `up` left behind (same source, kind and name) instead of
        # duplicating it; its secret can't be read back (masked), so it gets a fresh one.
        existing = next(
            (
                d
                for d in client.list_destinations()
                if d.get("sourceId") == inputs["source_id"]
                and (d.get("metadata") or {}).get("id") == inputs["metadata_id"]
                and d.get("name") == inputs["name"]
            ),
            None,
        )
        if existing is None:
            destination = client.create_destination(create_destination_body(inputs, shared_secret))
        else:
            destination = client.update_destination(
                existing["id"], update_destination_body(inputs, shared_secret)
            )
        subscription = self._ensure_subscription(destination["id"], None, inputs)
        state = destination_state(
            destination, subscription, shared_secret, inputs["shared_secret_rotation"]
        )
        return CreateResult(destination["id"], state)

    def _ensure_subscription(
        self, destination_id: str, subscription_id: str | None, inputs: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Update the known Send subscription, else adopt one by name, else create it."""
        client = self.client()
        if subscription_id:
            try:
                return client.update_subscription(
                    destination_id, subscription_id, update_subscription_input(inputs)
                )
            except NotFoundError:
                pass  # deleted out of band: fall through and recreate it
        existing = next(
            (
                s
                for s in client.list_subscriptions(destination_id)
                if s.get("actionId") == inputs["action_id"]
                and s.get("name") == inputs["subscription_name"]
            ),
            None,
        )
        if existing is not None:
            return client.update_subscription(
                destination_id, existing["id"], update_subscription_input(inputs)
            )
        return client.create_subscription(destination_id, create_subscription_body(inputs))

    def read_state(self, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        client = self.client()
        destination = client.get_destination(id_)
        subscription: dict[str, Any] | None = None
        subscription_id = props.get("subscription_id")
        if subscription_id:
            try:
                subscription = client.get_subscription(id_, subscription_id)
            except NotFoundError:
                subscription = None
        secret = observed_shared_secret(destination, props.get("shared_secret"))
        return destination_state(
            destination, subscription, secret, props.get("shared_secret_rotation")
        )

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = with_destination_defaults(news)
        rotate = olds.get("shared_secret_rotation") != inputs["shared_secret_rotation"]
        previous = olds.get("shared_secret")
        shared_secret = new_shared_secret() if rotate or not previous else str(previous)
        client = self.client()
        destination = client.update_destination(id_, update_destination_body(inputs, shared_secret))
        subscription = self._ensure_subscription(id_, olds.get("subscription_id"), inputs)
        state = destination_state(
            destination, subscription, shared_secret, inputs["shared_secret_rotation"]
        )
        return UpdateResult(state)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        client = self.client()
        subscription_id = props.get("subscription_id")
        if subscription_id:  # the real API may or may not cascade: don't leave one behind
            client.delete_subscription(id_, subscription_id)
        client.delete_destination(id_)


class SegmentWebhookDestination(OwnedResource, module="segment", name="WebhookDestination"):
    """Webhooks (Actions) destination + Send subscription; ``shared_secret`` is secret."""

    destination_id: pulumi.Output[str]
    subscription_id: pulumi.Output[str]
    shared_secret: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        args: SegmentWebhookDestinationArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            SegmentWebhookDestinationProvider(),
            resource_name,
            destination_inputs(args),
            DESTINATION_OUTPUTS,
            ["shared_secret"],
            opts,
        )
