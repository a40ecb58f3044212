"""The Segment HTTP API source a stack owns (``userflow-<environment>``), and a slug lookup.

``SegmentSource`` creates (or adopts) a source and exposes its write key as a secret output.
``SegmentSourceLookup`` resolves an existing source's slug to its id without owning it, so the
token stays in the provider process instead of the Pulumi program.

Write key rotation (bump ``write_key_rotation``): a source holds several write keys, so `up`
mints a new one and hands it out (the bridge writes with the first key of its secret) while
the old one keeps working at Segment; a later `up`, once the overlap has passed (every bridge
function has re-read its secret), deletes the old key from the source.

State refers to the provider classes by this module path: do not move or rename them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, UpdateResult

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
from components.api_http import ApiError, NotFoundError
from components.provider import ConfiguredProvider, OwnedResource, is_unknown
from components.rotation import (
    DEFAULT_OVERLAP_SECONDS,
    is_due,
    now,
    overlap_problems,
    overlap_seconds,
    step_pending,
    with_step_due,
)
from components.segment_api import HTTP_API_SOURCE_METADATA_ID, TOKEN_KEY, SegmentClient

# Segment slugs: lowercase letters, digits, hyphens and underscores, starting with a letter or
# digit (the app derives them from names the same way).
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")

SOURCE_IDENTITY = ("slug", "metadata_id")  # a different slug or kind is a different source
SOURCE_MUTABLE = ("name", "enabled", "write_key_rotation")
# The old write key, kept valid at Segment until `previous_write_key_until` (epoch seconds).
ROTATION_STATE = ("previous_write_key", "previous_write_key_until")
SOURCE_OUTPUTS = ("source_id", "write_key", *ROTATION_STATE)


@dataclass(frozen=True)
class SegmentSourceArgs:
    """What a Segment HTTP API source looks like."""

    slug: str  # e.g. "userflow-staging"; changing it replaces the source
    name: pulumi.Input[str]  # display name in the Segment app
    enabled: pulumi.Input[bool] = True
    metadata_id: str = HTTP_API_SOURCE_METADATA_ID  # catalog id: HTTP API source
    adopt: Adopt | None = None  # a hand-made source to take over at create (adoption.py)
    write_key_rotation: int = 0  # bump to mint a new write key and retire the old one
    rotation_overlap_seconds: int = DEFAULT_OVERLAP_SECONDS  # how long the old key stays valid


# -- payload <-> state (pure) ------------------------------------------------------------------


def source_inputs(args: SegmentSourceArgs) -> dict[str, Any]:
    return {
        "slug": args.slug,
        "name": args.name,
        "enabled": args.enabled,
        "metadata_id": args.metadata_id,
        "adopt": adopt_input(args.adopt),
        "write_key_rotation": args.write_key_rotation,
        "rotation_overlap_seconds": args.rotation_overlap_seconds,
    }


def with_source_defaults(news: Mapping[str, Any]) -> dict[str, Any]:
    inputs = dict(news)
    if inputs.get("enabled") is None:
        inputs["enabled"] = True
    if not inputs.get("metadata_id"):
        inputs["metadata_id"] = HTTP_API_SOURCE_METADATA_ID
    if inputs.get("write_key_rotation") is None:
        inputs["write_key_rotation"] = 0
    return inputs


def slug_problem(slug: Any) -> str | None:
    if is_unknown(slug):
        return None
    if not isinstance(slug, str) or not SLUG_PATTERN.match(slug):
        return (
            f"slug {slug!r} is not a valid Segment slug: use lowercase letters, digits, "
            "hyphens or underscores, starting with a letter or digit (e.g. 'userflow-staging')"
        )
    return None


def validate_source_inputs(inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    failures: list[tuple[str, str]] = []
    problem = slug_problem(inputs.get("slug"))
    if problem:
        failures.append(("slug", problem))
    name = inputs.get("name")
    if not is_unknown(name) and (not isinstance(name, str) or not name.strip()):
        failures.append(("name", "name must be a non-empty display name"))
    if not is_unknown(inputs.get("enabled")) and not isinstance(inputs.get("enabled"), bool):
        failures.append(("enabled", "enabled must be true or false"))
    failures.extend(overlap_problems(inputs))
    return failures


def create_source_body(inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "slug": inputs["slug"],
        "enabled": bool(inputs["enabled"]),
        "metadataId": inputs["metadata_id"],
    }


def update_source_body(inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": inputs["name"], "enabled": bool(inputs["enabled"])}


def source_needs_update(source: Mapping[str, Any], inputs: Mapping[str, Any]) -> bool:
    return bool(
        source.get("name") != inputs["name"] or source.get("enabled") != bool(inputs["enabled"])
    )


def pick_write_key(write_keys: list[str], previous: str | None) -> str | None:
    """Keep the key the stack already hands out while it is still valid; else the first one."""
    if previous and previous in write_keys:
        return previous
    return write_keys[0] if write_keys else None


def source_state(source: Mapping[str, Any], write_key: str | None) -> dict[str, Any]:
    """The outputs of a SegmentSource, from a ``SourceV1`` object."""
    return {
        "source_id": source["id"],
        "slug": source["slug"],
        "name": source.get("name") or "",
        "enabled": bool(source.get("enabled")),
        "metadata_id": (source.get("metadata") or {}).get("id"),
        "write_key": write_key,
    }


def rotation_state(props: Mapping[str, Any], rotation: Any) -> dict[str, Any]:
    """The rotation outputs carried from `props`, with the completed rotation number."""
    state: dict[str, Any] = {key: props.get(key) for key in ROTATION_STATE}
    state["write_key_rotation"] = rotation
    return state


def no_write_key_message(slug: str) -> str:
    return (
        f"Segment returned no write key for source {slug!r}: the Public API token "
        f"({TOKEN_KEY}) needs the Source Admin permission on this source or workspace; "
        "grant it (Settings → Access Management → Tokens) and run `pulumi up` again"
    )


# -- SegmentSource -------------------------------------------------------------------------


class SegmentSourceProvider(ConfiguredProvider[SegmentClient]):
    """CRUD of a Segment HTTP API source through the Public API."""

    client_type = SegmentClient
    with_defaults = staticmethod(with_source_defaults)
    validate = staticmethod(validate_source_inputs)
    identity = SOURCE_IDENTITY
    mutable = SOURCE_MUTABLE
    regenerated = ("write_key",)  # refresh found no key: update mints one

    def delete_before_replace(self, replaces: list[str]) -> bool:
        # A new slug can be created before the old source goes; the same slug can't (create
        # would find and refuse the old one), so then the old one must be deleted first.
        return "slug" not in replaces

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = with_source_defaults(props)
        client = self.client()
        adopt = requested(inputs)
        # An interrupted `up` may have created the source already: adopt it, don't duplicate
        # (pulumi import does not work for dynamic resources).
        source = (
            self._adopted(adopt, inputs)
            if adopt is not None
            else client.find_source_by_slug(inputs["slug"])
        )
        if source is None:
            try:
                source = client.create_source(create_source_body(inputs))
            except ApiError as exc:
                # A retried POST whose first attempt did create the source meets its own slug.
                source = client.find_source_by_slug(inputs["slug"]) if exc.status == 422 else None
                if source is None:
                    raise
        if (source.get("metadata") or {}).get("id") != inputs["metadata_id"]:
            raise ValueError(
                f"a Segment source with slug {inputs['slug']!r} already exists but is not an "
                f"HTTP API source ({source.get('id')}); pick another slug or remove it"
            )
        # The create body has no `name` in the spec (CreateSourceV1Input: slug, enabled,
        # metadataId, settings), so the display name takes a follow-up PATCH.
        if source_needs_update(source, inputs):
            source = client.update_source(source["id"], update_source_body(inputs))
        write_key = self._write_key(source, None, inputs["slug"])
        state = source_state(source, write_key)
        state.update(rotation_state({}, inputs["write_key_rotation"]))
        if adopt is not None:
            state[ADOPTED] = True
        return CreateResult(source["id"], state)

    def _adopted(self, adopt: Adopt, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The hand-made source ``adopt`` names, renamed to the stack's slug.

        Only its slug and display name change: its write key, and so whatever already sends
        to it with that key, keep working; one naming rule holds for adopted and new sources.
        """
        client = self.client()
        what = "Segment source"
        if adopt.id:
            try:
                source = client.get_source(adopt.id)
            except NotFoundError:
                raise not_found(adopt, what) from None
        else:
            source = pick_one(
                adopt, what, client.list_sources(), lambda s: s.get("slug"), inputs["slug"]
            )
        if (source.get("metadata") or {}).get("id") != inputs["metadata_id"]:
            raise AdoptionError(
                f"config {adopt.key}: Segment source {source.get('id')} is not an HTTP API "
                "source, so Userflow's events can't be sent to it; name the HTTP API source"
            )
        if source.get("slug") != inputs["slug"]:
            taken = client.find_source_by_slug(inputs["slug"])
            if taken is not None:
                raise AdoptionError(
                    f"config {adopt.key}: the stack's slug {inputs['slug']!r} already belongs "
                    f"to source {taken.get('id')}; adopt that one, or rename or delete it"
                )
            body = {"slug": inputs["slug"], **update_source_body(inputs)}
            source = client.update_source(str(source["id"]), body)
        return source

    def _write_key(self, source: Mapping[str, Any], previous: str | None, slug: str) -> str:
        """The source's write key; an empty list means no permission, or no key at all.

        Only a Source Admin token sees keys, and only it may mint one with the alpha
        ``POST /sources/{id}/writekey``; so when the list is empty, try minting one (that heals
        a key deleted out of band) and turn a refusal into the message that says what to fix.
        """
        write_key = pick_write_key(list(source.get("writeKeys") or []), previous)
        if write_key is not None:
            return write_key
        try:
            return self.client().add_write_key(str(source["id"]))
        except ApiError as exc:
            raise ValueError(f"{no_write_key_message(slug)} ({exc})") from None

    def read_state(self, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        source = self.client().get_source(id_)
        # No key listed (deleted out of band, or the token lost Source Admin) reads as None,
        # which diff() turns into an update that mints a key or says what permission is missing.
        write_key = pick_write_key(list(source.get("writeKeys") or []), props.get("write_key"))
        state = source_state(source, write_key)
        state.update(rotation_state(props, props.get("write_key_rotation")))
        return state

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """The pure diff, plus an update while an old write key waits to be removed."""
        # State written before rotation existed has no number: it never rotated (0).
        olds = {**olds, "write_key_rotation": olds.get("write_key_rotation") or 0}
        pending = step_pending(olds, ("previous_write_key_until",), "write_key_rotation",
                               with_source_defaults(news))
        return with_step_due(super().diff(id_, olds, news), pending)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = with_source_defaults(news)
        client = self.client()
        at, overlap = now(), overlap_seconds(inputs)
        rotation = rotation_state(olds, olds.get("write_key_rotation"))
        previous = rotation["previous_write_key"]
        if previous and is_due(rotation["previous_write_key_until"], at):
            # Every bridge function has re-read its secret since the switch: retire the key.
            client.remove_write_key(id_, str(previous))
            rotation.update(previous_write_key=None, previous_write_key_until=None)
        current = olds.get("write_key")
        if (olds.get("write_key_rotation") or 0) == inputs["write_key_rotation"]:
            rotation["write_key_rotation"] = inputs["write_key_rotation"]
        elif not rotation["previous_write_key"]:  # one rotation at a time
            new_key = client.add_write_key(id_)
            rotation.update(previous_write_key=current, previous_write_key_until=at + overlap,
                            write_key_rotation=inputs["write_key_rotation"])
            current = new_key
        source = client.update_source(id_, update_source_body(inputs))
        write_key = self._write_key(source, current, inputs["slug"])
        state = source_state(source, write_key)
        state.update(rotation)
        return UpdateResult(carry(olds, state))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        if self.releases(props):
            return  # adopted: the source and the events it holds stay (components/adoption.py)
        self.client().delete_source(id_)


class SegmentSource(OwnedResource, module="segment", name="Source"):
    """A Segment HTTP API source; ``write_key`` is a secret output."""

    source_id: pulumi.Output[str]
    slug: pulumi.Output[str]
    name: pulumi.Output[str]
    enabled: pulumi.Output[bool]
    write_key: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        args: SegmentSourceArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            SegmentSourceProvider(),
            resource_name,
            source_inputs(args),
            SOURCE_OUTPUTS,
            ["write_key", "previous_write_key"],
            opts,
        )


# -- SegmentSourceLookup -------------------------------------------------------------------


def lookup_state(source: Mapping[str, Any]) -> dict[str, Any]:
    return {"slug": source["slug"], "source_id": source["id"]}


class SegmentSourceLookupProvider(ConfiguredProvider[SegmentClient]):
    """Finds an existing source by slug; it never changes or deletes that source."""

    client_type = SegmentClient

    def validate(self, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        problem = slug_problem(inputs.get("slug"))
        return [("slug", problem)] if problem else []

    identity = ("slug",)

    def create(self, props: dict[str, Any]) -> CreateResult:
        slug = props["slug"]
        source = self.client().find_source_by_slug(slug)
        if source is None:
            raise ValueError(
                f"no Segment source with slug {slug!r} in the token's workspace: "
                "check app_source_slug (or set app_source_id)"
            )
        return CreateResult(source["id"], lookup_state(source))

    def read_state(self, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        return lookup_state(self.client().get_source(id_))

    def update(self, _id: str, olds: dict[str, Any], _news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(dict(olds))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """The looked-up source belongs to the app, not to this stack: leave it alone."""


class SegmentSourceLookup(Resource, module="segment", name="SourceLookup"):
    """The id of an existing Segment source, found by slug (not owned, never deleted)."""

    source_id: pulumi.Output[str]
    slug: pulumi.Output[str]

    def __init__(
        self, resource_name: str, slug: str, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            SegmentSourceLookupProvider(), resource_name, {"slug": slug, "source_id": None}, opts
        )
