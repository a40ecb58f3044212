"""The Segment destination's pure side: the event types it may send, the Segment API payloads
it writes, the state it reads back from them, the shared secret's rotation step and the input
checks. No I/O; the provider (components/segment_destination.py) does the calls.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from components.api_http import check_base_url
from components.project import SEGMENT_ROUTE_PATH
from components.provider import is_unknown, unknown
from components.rotation import accepted, is_due, overlap_problems
from components.segment_api import BATCH_SIZE_RANGE, WEBHOOKS_SEND_ACTION_ID, is_masked

# The event types of the Segment Spec (https://segment.com/docs/connections/spec/): the one list
# the stack config and the destination's trigger both check against.
SEGMENT_EVENT_TYPES = ("identify", "track", "page", "screen", "group", "alias")
# What Userflow reads from Segment: users (identify), their events (track), groups (group).
DEFAULT_EVENT_TYPES = ("identify", "track", "group")
SEND_METHOD = "POST"
DEFAULT_DATA_MAPPING = {"@path": "$."}  # the whole event, as the bridge expects
SHARED_SECRET_BYTES = 32

# The subscription settings this resource manages; any other setting (e.g. headers added in the
# Segment app) is left untouched, and a managed one no longer wanted is sent as null.
MANAGED_SEND_SETTINGS = ("url", "method", "enable_batching", "batch_size", "data")


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


def shared_secret_rotation_state(
    olds: Mapping[str, Any], current: str, rotate: bool, at: float, overlap: float
) -> tuple[str, dict[str, Any], bool]:
    """(secret Segment signs with, the rotation state, whether the bump was carried out).

    Pure but for the new secrets it generates. The previous secret is dropped once its
    deadline passed; a bump switches to the staged secret only when it has been staged for
    the overlap (else it waits for a later `up`), and only one rotation runs at a time.
    """
    staged, staged_at = olds.get("next_shared_secret"), olds.get("next_shared_secret_at")
    previous, until = olds.get("previous_shared_secret"), olds.get("previous_shared_secret_until")
    if previous and is_due(until, at):
        previous, until = None, None
    if not staged or staged == current:
        staged, staged_at = new_shared_secret(), at
    done = False
    if rotate and previous is None and is_due(float(staged_at or at) + overlap, at):
        previous, until = current, at + overlap
        current, staged, staged_at = staged, new_shared_secret(), at
        done = True
    state = {
        "next_shared_secret": staged,
        "next_shared_secret_at": staged_at,
        "previous_shared_secret": previous,
        "previous_shared_secret_until": until,
        "accepted_shared_secrets": accepted(current, staged, previous),
    }
    return current, state, done


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
    failures.extend(overlap_problems(inputs))
    return failures
