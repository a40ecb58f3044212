"""Taking a hand-made Segment/Userflow setup under a stack's management (adoption).

``pulumi import`` cannot bring objects into a stack through a dynamic provider (the provider
host fails with ``KeyError: '__provider'``, pulumi/pulumi#16175), so adoption is done by the
providers' ``create``: an ``adopt`` input names the existing object (by id, or by name) and
the config key it came from; create finds exactly that object, reconciles it in place and
records ``adopted: true`` in the outputs. Only create reads ``adopt``: once the object is the
stack's, the keys may stay or go without any change.

Adopting in place, rather than creating ours beside theirs, is what keeps one delivery path
at every moment: Segment and Userflow read a destination's or subscription's URL when they
send an event, so a single PATCH of that URL moves every later event from the hand-made
receiver to the bridge, and none goes to both.

On delete (``destroy``, or dropping the resource) an adopted object is *released* unless the
stack says ``adoptedOnDestroy: delete``: a destination or webhook subscription is disabled
(it would otherwise deliver to a bridge that no longer exists) and kept, a source is kept
as it is (it holds the events Userflow sent). Objects the stack created itself are deleted
as before.

Pure helpers only: the providers make the calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pulumi

from components.api_http import CONFIG_NAMESPACE

ON_DESTROY_KEY = f"{CONFIG_NAMESPACE}:adoptedOnDestroy"
OnDestroy = Literal["release", "delete"]
ON_DESTROY_CHOICES: tuple[OnDestroy, ...] = ("release", "delete")
DEFAULT_ON_DESTROY: OnDestroy = "release"  # also the default in Pulumi.yaml (tested)
ADOPTED = "adopted"  # the output that marks an adopted object


@dataclass(frozen=True)
class Adopt:
    """Which existing object a resource takes over: by id, or by name (slug, URL)."""

    key: str  # the config key that named it, for every error message
    id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.id is None) == (self.name is None):
            raise ValueError(f"{self.key}: give the object's id or its name, not both")

    def as_input(self) -> dict[str, Any]:
        return {"key": self.key, "id": self.id, "name": self.name}


@dataclass(frozen=True)
class AdoptionConfig:
    """What a stack's config asks to adopt (``components.config`` checks the keys)."""

    userflow_source: Adopt | None = None
    destination: Adopt | None = None
    destination_shared_secret: pulumi.Output[str] | None = None
    userflow_webhook: Adopt | None = None
    on_destroy: OnDestroy = DEFAULT_ON_DESTROY


def adopt_from(id_key: str, id_: str | None, name_key: str, name: str | None) -> Adopt | None:
    """The Adopt of one object from its two config keys (at most one is set: config checks)."""
    if id_:
        return Adopt(key=qualified(id_key), id=id_)
    if name:
        return Adopt(key=qualified(name_key), name=name)
    return None


def qualified(key: str) -> str:
    return key if ":" in key else f"{CONFIG_NAMESPACE}:{key}"


def adopt_input(adopt: Adopt | None) -> dict[str, Any] | None:
    return adopt.as_input() if adopt is not None else None


def requested(inputs: Mapping[str, Any]) -> Adopt | None:
    """The adoption a resource's inputs ask for, if any."""
    raw = inputs.get("adopt")
    if not isinstance(raw, Mapping) or not raw.get("key"):
        return None
    return Adopt(key=str(raw["key"]), id=raw.get("id") or None, name=raw.get("name") or None)


class AdoptionError(ValueError):
    """The object a config key names can't be adopted; the message names the key."""


def not_found(adopt: Adopt, what: str) -> AdoptionError:
    how = f"id {adopt.id!r}" if adopt.id else f"name {adopt.name!r}"
    return AdoptionError(
        f"config {adopt.key}: no {what} with {how} in the account the stack's credentials "
        f"reach; check the value (or unset {adopt.key} to create a new {what})"
    )


def pick_one(
    adopt: Adopt,
    what: str,
    objects: Iterable[Mapping[str, Any]],
    name_of: Callable[[Mapping[str, Any]], Any],
    own_name: str,
) -> dict[str, Any]:
    """The one object named ``adopt.name``, or already renamed to the stack's ``own_name`` by
    an adoption whose `up` was interrupted before it was recorded (so running `up` again
    finishes it); none, or several, is an error naming the key."""
    names = {adopt.name, own_name}
    found = [dict(o) for o in objects if name_of(o) in names]
    if not found:
        raise not_found(adopt, what)
    if len(found) > 1:
        ids = ", ".join(sorted(str(c.get("id")) for c in found))
        renamed = own_name != adopt.name and any(name_of(o) == own_name for o in found)
        also = f" or {own_name!r} (the stack's own)" if renamed else ""
        raise AdoptionError(
            f"config {adopt.key}: {len(found)} {what}s are named {adopt.name!r}{also} ({ids}); "
            f"adopt one by its id instead (the matching *Id key)"
        )
    return found[0]


def releases_on_destroy(props: Mapping[str, Any], on_destroy: str | None) -> bool:
    """Whether delete must release (keep) this object rather than delete it."""
    return bool(props.get(ADOPTED)) and (on_destroy or DEFAULT_ON_DESTROY) != "delete"


def on_destroy_from_config(config: Any) -> str | None:
    """``adoptedOnDestroy`` from the stack config a provider's configure() receives."""
    value = config.get(ON_DESTROY_KEY)
    return str(value) if value else None


def carry(olds: Mapping[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with the adoption mark of ``olds`` kept (reads and updates don't see it).

    Only where ``olds`` has one: outputs recorded before adoption existed stay as they were,
    so a refresh of an older stack shows no change.
    """
    if ADOPTED in olds:
        state[ADOPTED] = bool(olds[ADOPTED])
    return state


def late_adoption(olds: Mapping[str, Any], news: Mapping[str, Any]) -> str | None:
    """What is wrong when adoption keys appear for an object the stack already made itself.

    Adoption happens at create only; ignoring the keys would leave the hand-made object
    delivering beside the stack's own, the second delivery path adoption exists to avoid.
    """
    adopt = requested(news)
    if adopt is None or olds.get(ADOPTED):
        return None
    return (
        f"config {adopt.key}: this stack already has its own object, created before the key "
        "was set, and adoption only happens when the stack creates it; unset the key, or "
        "remove the stack's object first (docs: Moving off a hand-made setup)"
    )


def secret_input(value: pulumi.Input[str] | None) -> pulumi.Input[str] | None:
    return pulumi.Output.secret(value) if value is not None else None
