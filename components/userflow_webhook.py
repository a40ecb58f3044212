"""The Userflow webhook subscription that sends Userflow's own events to ``<bridge>/userflow``.

Default topics are the events Userflow itself records (flows, checklists, …), not ``event`` or
``*``: those would include the events the bridge wrote to Userflow from Segment and echo them
back. Userflow returns the subscription's signing ``secret``; it is a secret output.

Secret rotation (bump ``secret_rotation``): Userflow makes the secret and cannot change it,
so the subscription is replaced, one step per `up` once the previous step's overlap passed:
1. a new subscription is created *disabled* (nothing is sent with a secret the bridge does
   not know yet); the bridge accepts both secrets (``accepted_secrets``);
2. the new one is enabled, then the old one deleted. Between those two calls an event may go
   to both: the same notification id, which the bridge turns into the same Segment
   ``messageId``, so Segment keeps one. The old secret stays accepted (retries Userflow
   signed before the delete);
3. the old secret is dropped from the bridge's list.
The resource keeps its Pulumi id (the first subscription's); ``subscription_id`` is the live one.

State refers to the provider class by this module path: do not move or rename it.
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
    requested,
)
from components.api_http import NotFoundError, check_base_url
from components.project import USERFLOW_ROUTE_PATH
from components.provider import ConfiguredProvider, OwnedResource, is_unknown, unknown
from components.rotation import (
    DEFAULT_OVERLAP_SECONDS,
    accepted,
    is_due,
    now,
    overlap_problems,
    overlap_seconds,
    step_pending,
    with_step_due,
)
from components.userflow_api import API_VERSION, TOPIC_FORMS, TOPIC_PATTERN, UserflowClient

# Userflow-generated events the bridge forwards to Segment, by Userflow's built-in event names
# (https://userflow.com/docs/api#events; snake_case, as in `event.tracked.<name>` topics).
DEFAULT_TOPICS = tuple(
    f"event.tracked.{name}"
    for name in (
        "flow_started",
        "flow_completed",
        "flow_ended",
        "checklist_started",
        "checklist_completed",
        "checklist_task_completed",
        "question_answered",
    )
)
WEBHOOK_IDENTITY = ("api_version",)
WEBHOOK_MUTABLE = ("url", "topics", "secret_rotation")
# The replacement subscription while it waits disabled (and since when), the previous secret
# and when the bridge may stop accepting it, and the list the bridge accepts.
ROTATION_STATE = (
    "next_subscription_id",
    "next_secret",
    "next_since",
    "previous_secret",
    "previous_secret_until",
)
WEBHOOK_OUTPUTS = ("subscription_id", "secret", *ROTATION_STATE, "accepted_secrets")
SECRET_OUTPUTS = ["secret", "next_secret", "previous_secret", "accepted_secrets"]


@dataclass(frozen=True)
class UserflowWebhookSubscriptionArgs:
    """A Userflow webhook subscription pointed at the bridge."""

    bridge_url: pulumi.Input[str]  # https://… (http://127.0.0.1:… only for the local stack)
    topics: list[str] = field(default_factory=lambda: list(DEFAULT_TOPICS))
    adopt: Adopt | None = None  # a hand-made subscription to take over (by id, or by URL)
    secret_rotation: int = 0  # bump to replace the subscription (and so its secret)
    rotation_overlap_seconds: int = DEFAULT_OVERLAP_SECONDS  # wait between rotation steps


# -- payload <-> state (pure) ------------------------------------------------------------------


def webhook_inputs(args: UserflowWebhookSubscriptionArgs) -> dict[str, Any]:
    return {
        "bridge_url": args.bridge_url,
        "topics": list(args.topics) or list(DEFAULT_TOPICS),
        "api_version": API_VERSION,
        "adopt": adopt_input(args.adopt),
        "secret_rotation": args.secret_rotation,
        "rotation_overlap_seconds": args.rotation_overlap_seconds,
    }


def with_webhook_defaults(news: Mapping[str, Any]) -> dict[str, Any]:
    inputs = dict(news)
    if not inputs.get("topics"):
        inputs["topics"] = list(DEFAULT_TOPICS)
    if not inputs.get("api_version"):
        inputs["api_version"] = API_VERSION
    if inputs.get("secret_rotation") is None:
        inputs["secret_rotation"] = 0
    return inputs


def canonical_topics(topics: list[str]) -> list[str]:
    """Sorted and de-duplicated: Userflow treats topics as a set, so order is not drift."""
    return sorted(set(topics))


def webhook_endpoint(bridge_url: str) -> str:
    return bridge_url.rstrip("/") + USERFLOW_ROUTE_PATH


def desired_webhook_view(inputs: Mapping[str, Any]) -> dict[str, Any]:
    bridge_url = inputs["bridge_url"]
    topics = inputs["topics"]
    return {
        "api_version": inputs["api_version"],
        "url": unknown() if is_unknown(bridge_url) else webhook_endpoint(bridge_url),
        "topics": unknown() if is_unknown(topics) else canonical_topics(topics),
        "secret_rotation": inputs["secret_rotation"],
    }


def create_webhook_body(inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "api_version": inputs["api_version"],
        "url": webhook_endpoint(inputs["bridge_url"]),
        "topics": canonical_topics(inputs["topics"]),
    }


def update_webhook_body(inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "url": webhook_endpoint(inputs["bridge_url"]),
        "topics": canonical_topics(inputs["topics"]),
    }


def webhook_state(subscription: Mapping[str, Any], known_secret: str | None) -> dict[str, Any]:
    """The outputs, from a Userflow ``webhook_subscription`` object."""
    return {
        "subscription_id": subscription["id"],
        "secret": subscription.get("secret") or known_secret,
        "url": subscription.get("url"),
        "topics": canonical_topics(list(subscription.get("topics") or [])),
        "api_version": subscription.get("api_version") or API_VERSION,
    }


def webhook_rotation_state(props: Mapping[str, Any], secret: Any, rotation: Any) -> dict[str, Any]:
    """The rotation outputs carried from `props`, the completed rotation number, and the
    secrets the bridge accepts: the live one first."""
    state: dict[str, Any] = {key: props.get(key) for key in ROTATION_STATE}
    state["secret_rotation"] = rotation
    state["accepted_secrets"] = accepted(secret, state["next_secret"], state["previous_secret"])
    return state


def validate_webhook_inputs(inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    failures: list[tuple[str, str]] = []
    bridge_url = inputs.get("bridge_url")
    if not is_unknown(bridge_url):
        problem = (
            check_base_url(bridge_url, "bridge_url")
            if isinstance(bridge_url, str)
            else "bridge_url must be a URL string"
        )
        if problem:
            failures.append(("bridge_url", problem))
    topics = inputs.get("topics")
    if not is_unknown(topics):
        if not isinstance(topics, list) or not topics:
            failures.append(("topics", "topics must list at least one Userflow webhook topic"))
        else:
            bad = [t for t in topics if not isinstance(t, str) or not TOPIC_PATTERN.match(t)]
            if bad:
                failures.append(
                    (
                        "topics",
                        f"unknown topic(s) {bad}: use {TOPIC_FORMS} "
                        "(<name>: the snake_case event name)",
                    )
                )
    if inputs.get("api_version") not in (None, API_VERSION):
        failures.append(("api_version", f"api_version must be {API_VERSION}"))
    failures.extend(overlap_problems(inputs))
    return failures


# -- provider --------------------------------------------------------------------------------


class UserflowWebhookSubscriptionProvider(ConfiguredProvider[UserflowClient]):
    """CRUD of a Userflow webhook subscription."""

    client_type = UserflowClient
    with_defaults = staticmethod(with_webhook_defaults)
    validate = staticmethod(validate_webhook_inputs)
    desired_view = staticmethod(desired_webhook_view)
    identity = WEBHOOK_IDENTITY
    mutable = WEBHOOK_MUTABLE

    def delete_before_replace(self, replaces: list[str]) -> bool:
        # Create adopts a subscription with the same url, so the old one must go first.
        return True

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = with_webhook_defaults(props)
        adopt = requested(inputs)
        if adopt is not None:
            return self._adopt(adopt, inputs)
        client = self.client()
        url = webhook_endpoint(inputs["bridge_url"])
        # Adopt what an interrupted `up` left behind (same url) instead of a second one, which
        # would deliver every event twice.
        existing = next(
            (s for s in client.list_webhook_subscriptions() if s.get("url") == url), None
        )
        if existing is not None and not existing.get("secret"):
            existing = client.get_webhook_subscription(str(existing["id"]))
        if existing is not None and existing.get("secret"):
            # Enabled: what is found may be a rotation's replacement, created disabled.
            subscription = client.update_webhook_subscription(
                str(existing["id"]), {**update_webhook_body(inputs), "disabled": False}
            )
            state = webhook_state(subscription, str(existing["secret"]))
        else:
            if existing is not None:
                # Without its secret the bridge can't verify it: replace it with one we know.
                client.delete_webhook_subscription(str(existing["id"]))
            subscription = client.create_webhook_subscription(create_webhook_body(inputs))
            state = webhook_state(subscription, None)
        if not state["secret"]:
            raise ValueError(
                f"Userflow API: create webhook subscription {subscription['id']} returned no "
                "secret, so the bridge could not verify its deliveries"
            )
        state.update(webhook_rotation_state({}, state["secret"], inputs["secret_rotation"]))
        return CreateResult(str(subscription["id"]), state)

    def _adopt(self, adopt: Adopt, inputs: Mapping[str, Any]) -> CreateResult:
        """Take the hand-made subscription over in place: one PATCH moves its URL (and topics)
        to the bridge and keeps its secret, so Userflow sends each notification to the old
        receiver or to the bridge, never both, signed with a secret the bridge is given."""
        client = self.client()
        what = "Userflow webhook subscription"
        if adopt.id:
            try:
                subscription = client.get_webhook_subscription(adopt.id)
            except NotFoundError:
                raise not_found(adopt, what) from None
        else:
            subscription = pick_one(
                adopt,
                what,
                client.list_webhook_subscriptions(),
                lambda s: s.get("url"),
                webhook_endpoint(inputs["bridge_url"]),
            )
        found = str(subscription["id"])
        if not subscription.get("secret"):
            subscription = client.get_webhook_subscription(found)
        secret = subscription.get("secret")
        if not secret:
            raise AdoptionError(
                f"config {adopt.key}: Userflow returned no secret for subscription {found}, so "
                "the bridge could not verify its deliveries; unset the key to create a new one"
            )
        switched = client.update_webhook_subscription(
            found, {**update_webhook_body(inputs), "disabled": False}
        )
        state = webhook_state(switched, str(secret))
        state.update(webhook_rotation_state({}, state["secret"], inputs["secret_rotation"]))
        state[ADOPTED] = True
        return CreateResult(found, state)

    def read_state(self, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        live_id = str(props.get("subscription_id") or id_)  # another one after a rotation
        subscription = self.client().get_webhook_subscription(live_id)
        state = webhook_state(subscription, props.get("secret"))
        state.update(webhook_rotation_state(props, state["secret"], props.get("secret_rotation")))
        return state

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """The pure diff, plus an update while a rotation step waits (switch, or drop)."""
        # State written before rotation existed has no number: it never rotated (0).
        olds = {**olds, "secret_rotation": olds.get("secret_rotation") or 0}
        pending = step_pending(olds, ("next_since", "previous_secret_until"), "secret_rotation",
                               with_webhook_defaults(news))
        return with_step_due(super().diff(id_, olds, news), pending)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = with_webhook_defaults(news)
        client = self.client()
        at, overlap = now(), overlap_seconds(inputs)
        live_id, secret = str(olds.get("subscription_id") or id_), olds.get("secret")
        rotation = webhook_rotation_state(olds, secret, olds.get("secret_rotation"))
        if rotation["previous_secret"] and is_due(rotation["previous_secret_until"], at):
            rotation.update(previous_secret=None, previous_secret_until=None)  # step 3
        next_id = rotation["next_subscription_id"]
        if next_id and is_due(float(rotation["next_since"] or at) + overlap, at):
            # Step 2: enable first, delete second: a moment of two deliveries, never none.
            client.update_webhook_subscription(
                str(next_id), {**update_webhook_body(inputs), "disabled": False})
            client.delete_webhook_subscription(live_id)
            live_id, new_secret = str(next_id), rotation["next_secret"]
            rotation.update(previous_secret=secret, previous_secret_until=at + overlap,
                            next_subscription_id=None, next_secret=None, next_since=None,
                            secret_rotation=inputs["secret_rotation"])
            secret = new_secret
        elif (olds.get("secret_rotation") or 0) == inputs["secret_rotation"]:
            rotation["secret_rotation"] = inputs["secret_rotation"]
        elif not next_id and not rotation["previous_secret"]:
            # Step 1: the replacement, disabled until the bridge accepts its secret.
            created = client.create_webhook_subscription(
                {**create_webhook_body(inputs), "disabled": True})
            if not created.get("secret"):
                client.delete_webhook_subscription(str(created["id"]))
                raise ValueError(
                    f"Userflow API: create webhook subscription {created['id']} returned no "
                    "secret, so the bridge could not verify its deliveries; nothing changed"
                )
            rotation.update(next_subscription_id=str(created["id"]),
                            next_secret=str(created["secret"]), next_since=at)
        subscription = client.update_webhook_subscription(live_id, update_webhook_body(inputs))
        state = webhook_state(subscription, secret)
        rotation["accepted_secrets"] = accepted(
            state["secret"], rotation["next_secret"], rotation["previous_secret"])
        state.update(rotation)
        return UpdateResult(carry(olds, state))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        client = self.client()
        if self.releases(props):
            # Adopted: kept, but disabled, since the bridge it sends to may be going away.
            with contextlib.suppress(NotFoundError):  # already gone: nothing to release
                client.update_webhook_subscription(
                    str(props.get("subscription_id") or id_), {"disabled": True})
            if props.get("next_subscription_id"):  # a rotation's replacement: ours, not theirs
                with contextlib.suppress(NotFoundError):
                    client.delete_webhook_subscription(str(props["next_subscription_id"]))
            return
        client.delete_webhook_subscription(str(props.get("subscription_id") or id_))
        if props.get("next_subscription_id"):  # a rotation's replacement not yet switched to
            client.delete_webhook_subscription(str(props["next_subscription_id"]))


class UserflowWebhookSubscription(OwnedResource, module="userflow", name="WebhookSubscription"):
    """A Userflow webhook subscription to ``<bridge>/userflow``; ``secret`` is secret."""

    subscription_id: pulumi.Output[str]
    secret: pulumi.Output[str]
    accepted_secrets: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        args: UserflowWebhookSubscriptionArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            UserflowWebhookSubscriptionProvider(),
            resource_name,
            webhook_inputs(args),
            WEBHOOK_OUTPUTS,
            SECRET_OUTPUTS,
            opts,
        )
