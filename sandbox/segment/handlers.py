"""The Public API's handlers: list, get, update and delete shared by sources, destinations and
subscriptions (each a `Collection`), the create handlers, write keys and the catalog.

Each handler takes one `PublicCall` (authenticated, rate-limited, spec-checked by
`public_api`) and answers `(status, data)`; `routes` maps paths to them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sandbox.segment.catalog import (
    DESTINATION_METADATA,
    SOURCE_METADATA,
    WEBHOOKS_ACTIONS_DESTINATION_ID,
    WEBHOOKS_SEND_ACTION_SLUG,
)
from sandbox.segment.models import (
    WORKSPACE_ID,
    Caller,
    HandlerResult,
    PublicCall,
    check_destination_settings,
    check_slug,
    check_subscription,
    error_envelope,
    merge_settings,
    not_found,
    render_destination,
    render_source,
    render_subscription,
    validation_failure,
)
from sandbox.segment.observability import (
    EVENT_VOLUME_PATH,
    MetricsWindow,
    QueryError,
    VolumeQuery,
    delivery_metrics,
    event_volume,
    query_one,
)
from sandbox.wire import ApiError, JsonObject, utc_now_iso

if TYPE_CHECKING:
    from sandbox.segment.server import SegmentEmulator

PAGE_COUNT_RANGE = (1, 200)


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        prefix, _, number = text.partition(":")
        if prefix != "offset":
            raise ValueError(cursor)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise validation_failure(f"invalid cursor {cursor!r}", "pagination.cursor") from exc


def paginate(
    items: list[JsonObject], query: Mapping[str, str]
) -> tuple[list[JsonObject], JsonObject]:
    raw_count = query.get("pagination[count]")
    try:
        count = int(float(raw_count)) if raw_count is not None else 0
    except ValueError as exc:
        raise validation_failure("pagination.count must be a number", "pagination.count") from exc
    if not PAGE_COUNT_RANGE[0] <= count <= PAGE_COUNT_RANGE[1]:
        raise validation_failure(
            f"pagination.count must be between {PAGE_COUNT_RANGE[0]} and {PAGE_COUNT_RANGE[1]}",
            "pagination.count",
        )
    cursor = query.get("pagination[cursor]")
    offset = _decode_cursor(cursor) if cursor else 0
    if offset < 0 or (offset and offset >= len(items)):
        raise validation_failure(f"cursor {cursor!r} is past the end", "pagination.cursor")
    page = items[offset : offset + count]
    pagination: JsonObject = {
        "current": _encode_cursor(offset),
        "next": _encode_cursor(offset + count) if offset + count < len(items) else None,
        "previous": _encode_cursor(max(offset - count, 0)) if offset > 0 else None,
        "totalEntries": len(items),
    }
    return page, pagination


@dataclass(frozen=True)
class Collection:
    """One kind of stored object, and what the shared list/get/update/delete handlers need."""

    what: str  # its name in 404 messages
    path: str  # the collection's path template; an object is at f"{path}/{{{param}}}"
    param: str  # the path parameter holding an object's id
    one: str  # the response key of one object
    many: str  # the response key of a list
    objects: Callable[[SegmentEmulator], dict[str, JsonObject]]
    render: Callable[[PublicCall, JsonObject], JsonObject]
    # Sources own destinations, destinations own subscriptions: (owner, field naming it).
    # A path naming the owner scopes the objects to it; deleting an owner deletes what it owns.
    owner: tuple[Collection, str] | None
    patch_fields: tuple[str, ...]  # taken as given by PATCH (`settings` always merges)
    patch_envelope: str | None  # the key the PATCH body wraps its fields in, if any
    # After the merge, before storing: raise to refuse, or adjust `updated`.
    check_patch: Callable[[PublicCall, JsonObject, JsonObject, JsonObject], None]


def _check_source_patch(
    call: PublicCall, current: JsonObject, patch: JsonObject, updated: JsonObject
) -> None:
    if "slug" in patch:
        check_slug(call.emu.sources, patch["slug"], except_id=current["id"])


def _check_destination_patch(
    call: PublicCall, current: JsonObject, patch: JsonObject, updated: JsonObject
) -> None:
    if "name" in patch and not patch["name"]:
        updated["name"] = DESTINATION_METADATA[current["metadataId"]]["name"]
    if "settings" in patch:
        # The patch itself, not the merge: a `null` for an unknown key is refused too.
        check_destination_settings(current["metadataId"], patch["settings"] or {})


def _check_subscription_patch(
    call: PublicCall, current: JsonObject, patch: JsonObject, updated: JsonObject
) -> None:
    check_subscription(updated["actionId"], updated["trigger"], updated["settings"])
    updated["updatedAt"] = utc_now_iso()


SOURCES = Collection(
    what="source",
    path="/sources",
    param="sourceId",
    one="source",
    many="sources",
    objects=lambda emu: emu.sources,
    render=lambda call, source: render_source(source, call.caller),
    owner=None,
    patch_fields=("name", "enabled", "slug"),
    patch_envelope=None,
    check_patch=_check_source_patch,
)
DESTINATIONS = Collection(
    what="destination",
    path="/destinations",
    param="destinationId",
    one="destination",
    many="destinations",
    objects=lambda emu: emu.destinations,
    render=lambda call, destination: render_destination(destination),
    owner=(SOURCES, "sourceId"),
    patch_fields=("name", "enabled"),
    patch_envelope=None,
    check_patch=_check_destination_patch,
)
SUBSCRIPTIONS = Collection(
    what="subscription",
    path="/destinations/{destinationId}/subscriptions",
    param="id",
    one="subscription",
    many="subscriptions",
    objects=lambda emu: emu.subscriptions,
    render=lambda call, subscription: render_subscription(subscription),
    owner=(DESTINATIONS, "destinationId"),
    patch_fields=("name", "trigger", "enabled"),
    patch_envelope="input",
    check_patch=_check_subscription_patch,
)
COLLECTIONS = (SOURCES, DESTINATIONS, SUBSCRIPTIONS)


def _owner_scope(call: PublicCall, kind: Collection) -> tuple[str, str] | None:
    """(field, owner id) when the path names the owner, which must exist; None otherwise."""
    if kind.owner is None or kind.owner[0].param not in call.params:
        return None
    owner, field = kind.owner
    _find(call, owner)
    return field, call.params[owner.param]


def _find(call: PublicCall, kind: Collection) -> JsonObject:
    """The object the path names (lock held), or 404."""
    ident = call.params[kind.param]
    scope = _owner_scope(call, kind)
    found = kind.objects(call.emu).get(ident)
    if found is None or (scope is not None and found[scope[0]] != scope[1]):
        raise not_found(kind.what, ident)
    return found


def _delete_with_owned(emu: SegmentEmulator, kind: Collection, ident: str) -> None:
    del kind.objects(emu)[ident]
    for owned in COLLECTIONS:
        if owned.owner is not None and owned.owner[0] is kind:
            field = owned.owner[1]
            for owned_id in [i for i, o in owned.objects(emu).items() if o[field] == ident]:
                _delete_with_owned(emu, owned, owned_id)


def list_handler(kind: Collection) -> Callable[[PublicCall], HandlerResult]:
    def list_objects(call: PublicCall) -> HandlerResult:
        with call.emu.lock:
            scope = _owner_scope(call, kind)
            items = [
                kind.render(call, found)
                for found in kind.objects(call.emu).values()
                if scope is None or found[scope[0]] == scope[1]
            ]
        page, pagination = paginate(items, dict(call.request.query))
        return 200, {kind.many: page, "pagination": pagination}

    return list_objects


def get_handler(kind: Collection) -> Callable[[PublicCall], HandlerResult]:
    def get_object(call: PublicCall) -> HandlerResult:
        with call.emu.lock:
            return 200, {kind.one: kind.render(call, _find(call, kind))}

    return get_object


def update_handler(kind: Collection) -> Callable[[PublicCall], HandlerResult]:
    def update_object(call: PublicCall) -> HandlerResult:
        patch = call.body[kind.patch_envelope] if kind.patch_envelope else call.body or {}
        with call.emu.lock:
            current = _find(call, kind)
            updated = dict(current)
            for key in kind.patch_fields:
                if key in patch:
                    updated[key] = patch[key]
            if "settings" in patch:
                updated["settings"] = merge_settings(current["settings"], patch["settings"] or {})
            kind.check_patch(call, current, patch, updated)
            kind.objects(call.emu)[current["id"]] = updated
            return 200, {kind.one: kind.render(call, updated)}

    return update_object


def delete_handler(kind: Collection) -> Callable[[PublicCall], HandlerResult]:
    def delete_object(call: PublicCall) -> HandlerResult:
        with call.emu.lock:
            _delete_with_owned(call.emu, kind, _find(call, kind)["id"])
        return 200, {"status": "SUCCESS"}

    return delete_object


def catalog_handler(
    table: Mapping[str, JsonObject], what: str, key: str
) -> Callable[[PublicCall], HandlerResult]:
    def catalog_entry(call: PublicCall) -> HandlerResult:
        (metadata_id,) = call.params.values()  # the one path parameter: the catalog id
        metadata = table.get(metadata_id)
        if metadata is None:
            raise not_found(what, metadata_id)
        return 200, {key: metadata}

    return catalog_entry


def create_source(call: PublicCall) -> HandlerResult:
    body, emu = call.body, call.emu
    with emu.lock:
        if body["metadataId"] not in SOURCE_METADATA:
            raise validation_failure(
                f"unknown source metadataId {body['metadataId']!r}", "metadataId"
            )
        check_slug(emu.sources, body["slug"])
        source = {
            "id": emu.ids.token(22),
            "slug": body["slug"],
            "name": body.get("name") or body["slug"],
            "metadataId": body["metadataId"],
            "enabled": body["enabled"],
            "writeKeys": [emu.ids.token(32)],
            "settings": {k: v for k, v in (body.get("settings") or {}).items() if v is not None},
            "labels": [],
            "createdAt": utc_now_iso(),
        }
        emu.sources[source["id"]] = source
        return 200, {"source": render_source(source, call.caller)}


def _require_source_admin(caller: Caller) -> None:
    if not caller.source_admin:
        raise ApiError(
            error_envelope(
                403, "Forbidden", "managing write keys needs the source admin permission"
            )
        )


def add_write_key(call: PublicCall) -> HandlerResult:
    _require_source_admin(call.caller)
    with call.emu.lock:
        source = _find(call, SOURCES)
        key = call.emu.ids.token(32)
        source["writeKeys"] = [*source["writeKeys"], key]
        return 200, {"writeKey": key, "source": render_source(source, call.caller)}


def remove_write_key(call: PublicCall) -> HandlerResult:
    _require_source_admin(call.caller)
    write_key = call.params["writeKey"]
    with call.emu.lock:
        source = _find(call, SOURCES)
        if write_key not in source["writeKeys"]:
            raise not_found("write key of source", source["id"])
        source["writeKeys"] = [k for k in source["writeKeys"] if k != write_key]
    return 200, {"status": "SUCCESS"}


def create_destination(call: PublicCall) -> HandlerResult:
    body, emu = call.body, call.emu
    with emu.lock:
        metadata_id = body["metadataId"]
        if metadata_id not in DESTINATION_METADATA:
            raise validation_failure(
                f"unknown destination metadataId {metadata_id!r}", "metadataId"
            )
        if body["sourceId"] not in emu.sources:
            raise validation_failure(f"source {body['sourceId']!r} does not exist", "sourceId")
        settings = {k: v for k, v in body["settings"].items() if v is not None}
        check_destination_settings(metadata_id, settings)
        destination = {
            "id": emu.ids.token(22),
            "name": body.get("name") or DESTINATION_METADATA[metadata_id]["name"],
            "enabled": bool(body.get("enabled", False)),
            "metadataId": metadata_id,
            "sourceId": body["sourceId"],
            "settings": settings,
            "createdAt": utc_now_iso(),
        }
        emu.destinations[destination["id"]] = destination
        return 200, {"destination": render_destination(destination)}


def create_subscription(call: PublicCall) -> HandlerResult:
    body, emu = call.body, call.emu
    with emu.lock:
        destination = _find(call, DESTINATIONS)
        if destination["metadataId"] != WEBHOOKS_ACTIONS_DESTINATION_ID:
            raise validation_failure("this destination has no actions", "actionId")
        settings = {k: v for k, v in (body.get("settings") or {}).items() if v is not None}
        check_subscription(body["actionId"], body["trigger"], settings)
        now = utc_now_iso()
        subscription = {
            "id": emu.ids.token(22),
            "name": body["name"],
            "actionId": body["actionId"],
            "actionSlug": WEBHOOKS_SEND_ACTION_SLUG,
            "destinationId": destination["id"],
            "enabled": body["enabled"],
            "settings": settings,
            "trigger": body["trigger"],
            "createdAt": now,
            "updatedAt": now,
        }
        emu.subscriptions[subscription["id"]] = subscription
        # Create answers under its own key, unlike get and update (the spec says so).
        return 200, {"destinationSubscription": render_subscription(subscription)}


# -- what Segment reports about itself (`observability`) ------------------------------------------


def event_volume_handler(call: PublicCall) -> HandlerResult:
    """`GET /events/volume`: accepted events per source over time, from the Tracking API."""
    query = call.request.query
    try:
        volume_query = VolumeQuery.parse(query)
        with call.emu.lock:
            events = {source_id: list(found) for source_id, found in call.emu.events.items()}
            sources = {source_id: dict(s) for source_id, s in call.emu.sources.items()}
        rows = event_volume(events, sources, volume_query)
    except QueryError as exc:
        raise validation_failure(str(exc), exc.field) from exc
    data: JsonObject = {
        "path": EVENT_VOLUME_PATH,
        "query": volume_query.echo(WORKSPACE_ID),
        "result": rows,
    }
    if query_one(query, "pagination[count]") is not None:
        data["result"], data["pagination"] = paginate(rows, dict(query))
    else:
        data["pagination"] = {"current": _encode_cursor(0), "totalEntries": len(rows)}
    return 200, data


def delivery_metrics_handler(call: PublicCall) -> HandlerResult:
    """`GET /destinations/{destinationId}/delivery-metrics`: the destination's deliveries and
    their outcomes, from the delivery attempt log."""
    with call.emu.lock:
        destination = _find(call, DESTINATIONS)
        metadata_id = str(destination["metadataId"])
    source_id = query_one(call.request.query, "sourceId") or ""
    try:
        window = MetricsWindow.parse(call.request.query, datetime.now(UTC))
        metrics = delivery_metrics(call.emu.delivery_log(), destination["id"], source_id, window)
    except QueryError as exc:
        raise validation_failure(str(exc), exc.field) from exc
    summary = {"sourceId": source_id, "destinationMetadataId": metadata_id, "metrics": metrics}
    return 200, {"deliveryMetricsSummary": summary}
