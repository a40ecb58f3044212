"""The Webhooks (Actions) destination on the app's Segment source, with its Send subscription.

Segment delivers the app's events to ``<bridge>/segment``, signed with ``settings.sharedSecret``.
The provider generates that secret (a secret output) and keeps it across updates; it changes only
when ``shared_secret_rotation`` changes (bump the number to rotate), or when a refresh shows the
secret was removed out of band.

Rotation without a rejected delivery: the provider always keeps the *next* secret staged
(``next_shared_secret``), and the bridge accepts it from the moment it is staged
(``accepted_shared_secrets``: current, next, previous). A bump hands Segment the staged secret
only once it has been staged for the overlap (so every bridge function has re-read it), keeps
the old one accepted for another overlap (deliveries Segment signed before the switch), and
stages a fresh next one; a later `up` drops the old one. See components/rotation.py.

State refers to the provider class by this module path: do not move or rename it. Its pure
side (API payloads, state, the rotation step, input checks) is
components/segment_destination_payloads.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, UpdateResult

from components.adoption import (
    ADOPTED,
    Adopt,
    AdoptionError,
    adopt_input,
    carry,
    not_found,
    pick_one,
    qualified,
    requested,
    secret_input,
)
from components.api_http import NotFoundError
from components.provider import ConfiguredProvider, OwnedResource
from components.rotation import (
    DEFAULT_OVERLAP_SECONDS,
    accepted,
    now,
    overlap_seconds,
    step_pending,
    with_step_due,
)
from components.segment_api import (
    WEBHOOKS_ACTIONS_METADATA_ID,
    WEBHOOKS_SEND_ACTION_ID,
    SegmentClient,
)
from components.segment_destination_payloads import (
    DEFAULT_EVENT_TYPES,
    MANAGED_SEND_SETTINGS,
    create_destination_body,
    create_subscription_body,
    desired_view,
    destination_state,
    new_shared_secret,
    observed_shared_secret,
    shared_secret_rotation_state,
    update_destination_body,
    update_subscription_input,
    validate_destination_inputs,
)

DEFAULT_NAME = "Userflow bridge"
DEFAULT_SUBSCRIPTION_NAME = "Send to the Userflow bridge"

DESTINATION_IDENTITY = ("source_id", "metadata_id", "action_id")
DESTINATION_MUTABLE = (
    "name",
    "enabled",
    "subscription_name",
    "trigger",
    *MANAGED_SEND_SETTINGS,
    "shared_secret_rotation",
)
ADOPT_SHARED_SECRET_KEY = qualified("adoptDestinationSharedSecret")
# State kept for rotation (components/rotation.py): the staged next secret and when it was
# staged, the previous secret and when it may be dropped, and the list the bridge accepts.
ROTATION_STATE = (
    "next_shared_secret",
    "next_shared_secret_at",
    "previous_shared_secret",
    "previous_shared_secret_until",
    "accepted_shared_secrets",
)
DESTINATION_OUTPUTS = ("destination_id", "subscription_id", "shared_secret", *ROTATION_STATE)
SECRET_OUTPUTS = [
    "shared_secret", "next_shared_secret", "previous_shared_secret", "accepted_shared_secrets"]


@dataclass(frozen=True)
class SegmentWebhookDestinationArgs:
    """A Webhooks (Actions) destination that sends the app's events to the bridge."""

    source_id: pulumi.Input[str]  # the app's source; another source replaces the destination
    bridge_url: pulumi.Input[str]  # https://… (http://127.0.0.1:… only for the local stack)
    event_types: list[str] = field(default_factory=lambda: list(DEFAULT_EVENT_TYPES))
    batching: bool = True  # Pulumi.yaml's segmentBatching default says why
    batch_size: int = 100  # events per delivery when batching (1..4000)
    shared_secret_rotation: int = 0  # bump to generate a new shared secret
    rotation_overlap_seconds: int = DEFAULT_OVERLAP_SECONDS  # wait between rotation steps
    name: str = DEFAULT_NAME
    enabled: bool = True
    subscription_name: str = DEFAULT_SUBSCRIPTION_NAME
    adopt: Adopt | None = None  # a hand-made destination to take over at create (adoption.py)
    # The secret the adopted destination signs with now, kept at adoption (Segment only shows
    # it masked), so the bridge accepts its deliveries from the first one.
    adopt_shared_secret: pulumi.Input[str] | None = None


# -- inputs (pure; the payloads are components/segment_destination_payloads.py) --------------


def destination_inputs(args: SegmentWebhookDestinationArgs) -> dict[str, Any]:
    return {
        "source_id": args.source_id,
        "bridge_url": args.bridge_url,
        "event_types": list(args.event_types),
        "batching": args.batching,
        "batch_size": args.batch_size,
        "shared_secret_rotation": args.shared_secret_rotation,
        "rotation_overlap_seconds": args.rotation_overlap_seconds,
        "name": args.name,
        "enabled": args.enabled,
        "subscription_name": args.subscription_name,
        "metadata_id": WEBHOOKS_ACTIONS_METADATA_ID,
        "action_id": WEBHOOKS_SEND_ACTION_ID,
        "adopt": adopt_input(args.adopt),
        "adopt_shared_secret": secret_input(args.adopt_shared_secret),
    }


def _defaults() -> dict[str, Any]:
    """Every optional input's default, read off the args dataclass (their one place)."""
    blank = destination_inputs(SegmentWebhookDestinationArgs(source_id="", bridge_url=""))
    return {
        key: value
        for key, value in blank.items()
        if key not in ("source_id", "bridge_url", "adopt", "adopt_shared_secret")
    }


DEFAULTS: dict[str, Any] = _defaults()


def with_destination_defaults(news: Mapping[str, Any]) -> dict[str, Any]:
    inputs = dict(news)
    for key, value in DEFAULTS.items():
        if inputs.get(key) is None:
            inputs[key] = value
    return inputs



# -- provider --------------------------------------------------------------------------------


class SegmentWebhookDestinationProvider(ConfiguredProvider[SegmentClient]):
    """CRUD of the Webhooks (Actions) destination and its Send subscription."""

    client_type = SegmentClient
    with_defaults = staticmethod(with_destination_defaults)
    validate = staticmethod(validate_destination_inputs)
    desired_view = staticmethod(desired_view)
    identity = DESTINATION_IDENTITY
    mutable = DESTINATION_MUTABLE
    # A refresh that found the subscription or the secret gone: update recreates them (and a
    # state from before rotation staging gets its next secret staged).
    regenerated = ("subscription_id", "shared_secret", "next_shared_secret")

    def delete_before_replace(self, replaces: list[str]) -> bool:
        # On another source the new destination can come first. Otherwise create would adopt
        # the very destination about to be deleted, so the old one has to go first.
        return bool(replaces) and replaces != ["source_id"]

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = with_destination_defaults(props)
        adopt = requested(inputs)
        if adopt is not None:
            return self._adopt(adopt, inputs)
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
        _, rotation, _ = shared_secret_rotation_state(
            {}, shared_secret, False, now(), overlap_seconds(inputs)
        )
        state.update(rotation)
        return CreateResult(destination["id"], state)

    def _adopt(self, adopt: Adopt, inputs: Mapping[str, Any]) -> CreateResult:
        """Take the hand-made destination over in place: its secret, then its Send URL.

        Two PATCHes in this order: the destination (name, enabled, the shared secret it
        already signs with), then its one Send subscription (the bridge's URL, trigger,
        settings). Segment reads both when it sends an event, so each event goes to the old
        receiver or to the bridge, never both, and is signed with a secret the bridge knows.
        """
        client = self.client()
        what = "Webhooks (Actions) destination"
        if adopt.id:
            try:
                destination = client.get_destination(adopt.id)
            except NotFoundError:
                raise not_found(adopt, what) from None
        else:
            destination = pick_one(
                adopt, what, client.list_destinations(), lambda d: d.get("name"), inputs["name"]
            )
        found = destination.get("id")
        if (destination.get("metadata") or {}).get("id") != inputs["metadata_id"]:
            raise AdoptionError(
                f"config {adopt.key}: destination {found} is not a Webhooks (Actions) "
                "destination; name the one that sends the app's events to Userflow"
            )
        if destination.get("sourceId") != inputs["source_id"]:
            raise AdoptionError(
                f"config {adopt.key}: destination {found} is on source "
                f"{destination.get('sourceId')}, not on the app's source {inputs['source_id']} "
                "(segmentAppSourceId / segmentAppSourceSlug)"
            )
        shared_secret = inputs.get("adopt_shared_secret")
        if not shared_secret:
            raise AdoptionError(
                f"config {adopt.key}: adopting a destination needs the shared secret it signs "
                f"with now, as {ADOPT_SHARED_SECRET_KEY} (a secret)"
            )
        # Every check comes before the first write: a refusal leaves their setup untouched.
        send = self._adopted_send(adopt, str(found), inputs)
        destination = client.update_destination(
            str(found), update_destination_body(inputs, str(shared_secret))
        )
        subscription = (
            client.create_subscription(str(found), create_subscription_body(inputs))
            if send is None
            else client.update_subscription(
                str(found), str(send["id"]), update_subscription_input(inputs)
            )
        )
        state = destination_state(
            destination, subscription, str(shared_secret), inputs["shared_secret_rotation"]
        )
        # Stage the next secret at once, as a created destination does, so that a later
        # rotation has its overlap and the next `up` has nothing to do.
        _, rotation, _ = shared_secret_rotation_state(
            {}, str(shared_secret), False, now(), overlap_seconds(inputs)
        )
        state.update(rotation)
        state[ADOPTED] = True
        return CreateResult(str(found), state)

    def _adopted_send(
        self, adopt: Adopt, destination_id: str, inputs: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The adopted destination's Send subscription to point at the bridge: its one enabled
        one (the only one, if all are disabled; None: it has none, create ours)."""
        sends = [
            s for s in self.client().list_subscriptions(destination_id)
            if s.get("actionId") == inputs["action_id"]
        ]
        enabled = [s for s in sends if s.get("enabled")]
        if len(enabled) > 1:
            ids = ", ".join(sorted(str(s.get("id")) for s in enabled))
            raise AdoptionError(
                f"config {adopt.key}: destination {destination_id} has {len(enabled)} enabled "
                f"Send subscriptions ({ids}), each a delivery path of its own; disable or "
                "delete all but one in the Segment app, then run `pulumi up` again"
            )
        chosen = enabled or (sends if len(sends) == 1 else [])
        return chosen[0] if chosen else None

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
        state = destination_state(
            destination, subscription, secret, props.get("shared_secret_rotation")
        )
        # Rotation state lives only in Pulumi's state (Segment masks the secret): keep it.
        state.update({key: props.get(key) for key in ROTATION_STATE})
        state["accepted_shared_secrets"] = accepted(
            secret, props.get("next_shared_secret"), props.get("previous_shared_secret")
        )
        return state

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """The pure diff, plus an update while a rotation step is waiting (previous to drop)."""
        pending = step_pending(
            olds, ("previous_shared_secret_until",), "shared_secret_rotation",
            with_destination_defaults(news),
        )
        return with_step_due(super().diff(id_, olds, news), pending)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = with_destination_defaults(news)
        rotate = olds.get("shared_secret_rotation") != inputs["shared_secret_rotation"]
        # A secret lost out of band is replaced by the staged one: the bridge accepts it.
        current = str(olds.get("shared_secret") or olds.get("next_shared_secret") or "")
        shared_secret, rotation, done = shared_secret_rotation_state(
            olds, current or new_shared_secret(), rotate, now(), overlap_seconds(inputs)
        )
        client = self.client()
        destination = client.update_destination(id_, update_destination_body(inputs, shared_secret))
        subscription = self._ensure_subscription(id_, olds.get("subscription_id"), inputs)
        # A bump not carried out yet keeps the old number, so the next `up` tries again.
        completed = inputs["shared_secret_rotation"] if done or not rotate else olds.get(
            "shared_secret_rotation")
        state = destination_state(destination, subscription, shared_secret, completed)
        state.update(rotation)
        return UpdateResult(carry(olds, state))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        client = self.client()
        if self.releases(props):
            # Adopted: kept, but disabled, since the bridge it sends to may be going away.
            with contextlib.suppress(NotFoundError):  # already gone: nothing to release
                client.update_destination(id_, {"enabled": False})
            return
        subscription_id = props.get("subscription_id")
        if subscription_id:  # the real API may or may not cascade: don't leave one behind
            client.delete_subscription(id_, subscription_id)
        client.delete_destination(id_)


class SegmentWebhookDestination(OwnedResource, module="segment", name="WebhookDestination"):
    """Webhooks (Actions) destination + Send subscription; ``shared_secret`` is secret."""

    destination_id: pulumi.Output[str]
    subscription_id: pulumi.Output[str]
    shared_secret: pulumi.Output[str]
    accepted_shared_secrets: pulumi.Output[str]

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
            SECRET_OUTPUTS,
            opts,
        )
