"""The Userflow REST API's handlers: upserts of users and groups, events, webhook
subscriptions, and list/get/delete shared by users, groups and subscriptions (`KINDS`).

Each takes (emulator, request, path parameters, JSON body) and answers (status, data);
`routes` maps paths to them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbox.userflow.attributes import merge_attributes
from sandbox.userflow.models import (
    API_VERSION,
    HandlerResult,
    RestHandler,
    error,
    existing,
    list_page,
    object_id,
    upsert_record,
    validated_attributes,
)
from sandbox.userflow.webhooks import TOPIC_PATTERN, notify
from sandbox.wire import HttpRequest, JsonObject, utc_now_iso

if TYPE_CHECKING:
    from sandbox.userflow.server import UserflowEmulator


def upsert_user(
    emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
) -> HandlerResult:
    user_id = object_id(body.get("id"), "id")
    attributes = validated_attributes(body)
    if "groups" in body and "memberships" in body:
        raise error(400, "invalid_request", "send either groups or memberships, never both")
    wanted: list[tuple[str, Any, Any]] = []  # (group id, group attributes, membership attributes)
    for entry in body.get("groups") or []:
        if not isinstance(entry, dict):
            raise error(400, "invalid_request", "groups entries must be objects {id, attributes}")
        wanted.append(
            (object_id(entry.get("id"), "groups[].id"), validated_attributes(entry), None)
        )
    for entry in body.get("memberships") or []:
        group = entry.get("group") if isinstance(entry, dict) else None
        if not isinstance(group, dict):
            raise error(400, "invalid_request", "memberships entries need a group object")
        wanted.append(
            (
                object_id(group.get("id"), "memberships[].group.id"),
                validated_attributes(group),
                validated_attributes(entry),
            )
        )
    prune = body.get("prune_memberships", False)
    if not isinstance(prune, bool):
        raise error(400, "invalid_request", "prune_memberships must be a boolean")
    changes: list[JsonObject] = []
    with emu.lock:
        now = utc_now_iso()
        membership_changed = False
        for group_id, group_attributes, membership_attributes in wanted:
            group_change = emu.upsert_group(group_id, group_attributes)
            if group_change:
                changes.append(group_change)
            key = (user_id, group_id)
            membership = emu.memberships.get(key)
            if membership is None:
                emu.memberships[key] = {
                    "object": "group_membership",
                    "user_id": user_id,
                    "group_id": group_id,
                    "attributes": merge_attributes({}, membership_attributes),
                    "created_at": now,
                }
                membership_changed = True
            elif membership_attributes:
                merged = merge_attributes(membership["attributes"], membership_attributes)
                membership_changed |= merged != membership["attributes"]
                membership["attributes"] = merged
        if prune:
            keep = {group_id for group_id, _, _ in wanted}
            for key in [k for k in emu.memberships if k[0] == user_id and k[1] not in keep]:
                del emu.memberships[key]
                membership_changed = True
        user_change = upsert_record(
            emu.users, "user", user_id, attributes, now, changed_besides=membership_changed
        )
        if user_change:
            changes.insert(0, user_change)
        rendered = emu.render_user(emu.users[user_id])
    notify(emu, changes)
    return 200, rendered


def upsert_group(
    emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
) -> HandlerResult:
    group_id = object_id(body.get("id"), "id")
    attributes = validated_attributes(body)
    with emu.lock:
        change = emu.upsert_group(group_id, attributes)
        group = json.loads(json.dumps(emu.groups[group_id]))
    notify(emu, [change] if change else [])
    return 200, group


def track_event(
    emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
) -> HandlerResult:
    user_id = object_id(body.get("user_id"), "user_id")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise error(400, "invalid_request", "name must be a non-empty string")
    attributes = validated_attributes(body)
    group_raw = body.get("group_id")
    group_id = object_id(group_raw, "group_id") if group_raw is not None else None
    at = body.get("time")
    if at is not None and not isinstance(at, str):
        raise error(400, "invalid_request", "time must be an ISO 8601 string")
    with emu.lock:
        changes = emu.record_event(user_id, name, attributes, group_id, at)
    notify(emu, changes)
    return 200, json.loads(json.dumps(changes[-1]["object"]))


def list_events(
    emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
) -> HandlerResult:
    user_id = req.query_value("user_id")
    with emu.lock:
        events = [e for e in emu.events if user_id is None or e["user_id"] == user_id]
        events = json.loads(json.dumps(events))
    return list_page(req, events, "/events")


def _check_subscription_fields(body: Mapping[str, Any], partial: bool) -> None:
    if not partial or "url" in body:
        url = body.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://\S+$", url):
            raise error(400, "invalid_request", "url must be an http(s) URL")
    if not partial or "topics" in body:
        topics = body.get("topics")
        if (
            not isinstance(topics, list)
            or not topics
            or not all(isinstance(t, str) and TOPIC_PATTERN.match(t) for t in topics)
        ):
            raise error(
                400,
                "invalid_request",
                "topics must be a non-empty list of: *, user[.created|.updated], "
                "group[.created|.updated], event, event.tracked[.<name>]",
            )
    if "disabled" in body and not isinstance(body["disabled"], bool):
        raise error(400, "invalid_request", "disabled must be a boolean")


def create_subscription(
    emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
) -> HandlerResult:
    if body.get("api_version") != API_VERSION:
        raise error(400, "invalid_request", f"api_version must be {API_VERSION!r}")
    _check_subscription_fields(body, partial=False)
    with emu.lock:
        subscription = {
            "id": emu.new_id(),
            "object": "webhook_subscription",
            "api_version": API_VERSION,
            "url": body["url"],
            "topics": list(body["topics"]),
            "disabled": bool(body.get("disabled", False)),
            "secret": emu.ids.token(40),
            "created_at": utc_now_iso(),
        }
        emu.subscriptions[subscription["id"]] = subscription
        return 200, dict(subscription)


def update_subscription(
    emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
) -> HandlerResult:
    unknown = set(body) - {"url", "topics", "disabled"}
    if unknown:
        raise error(400, "invalid_request", f"cannot update {sorted(unknown)}")
    _check_subscription_fields(body, partial=True)
    with emu.lock:
        subscription = existing(emu.subscriptions, "webhook subscription", p["subscription_id"])
        subscription.update(
            {key: body[key] for key in ("url", "topics", "disabled") if key in body}
        )
        return 200, dict(subscription)


# -- list, get and delete: the same for users, groups and webhook subscriptions --------------------


@dataclass(frozen=True)
class Kind:
    what: str  # its name in 404 messages
    object_type: str  # its `object` field
    path: str  # the list's path; one object is at f"{path}/{{{param}}}"
    param: str  # the path parameter holding an object's id
    objects: Callable[[UserflowEmulator], dict[str, JsonObject]]
    render: Callable[[UserflowEmulator, JsonObject], JsonObject]
    forget: Callable[[UserflowEmulator, str], None]  # drops what belonged to a deleted object


def _deep_copy(emu: UserflowEmulator, stored: JsonObject) -> JsonObject:
    copied: JsonObject = json.loads(json.dumps(stored))
    return copied


def _forget_user(emu: UserflowEmulator, user_id: str) -> None:
    for key in [k for k in emu.memberships if k[0] == user_id]:
        del emu.memberships[key]
    emu.events = [e for e in emu.events if e["user_id"] != user_id]


def _forget_group(emu: UserflowEmulator, group_id: str) -> None:
    for key in [k for k in emu.memberships if k[1] == group_id]:
        del emu.memberships[key]


KINDS = (
    Kind(
        what="user",
        object_type="user",
        path="/users",
        param="user_id",
        objects=lambda emu: emu.users,
        render=lambda emu, user: emu.render_user(user),
        forget=_forget_user,
    ),
    Kind(
        what="group",
        object_type="group",
        path="/groups",
        param="group_id",
        objects=lambda emu: emu.groups,
        render=_deep_copy,
        forget=_forget_group,
    ),
    Kind(
        what="webhook subscription",
        object_type="webhook_subscription",
        path="/webhook_subscriptions",
        param="subscription_id",
        objects=lambda emu: emu.subscriptions,
        render=_deep_copy,
        forget=lambda emu, subscription_id: None,
    ),
)


def kind_handlers(kind: Kind) -> tuple[RestHandler, RestHandler, RestHandler]:
    """List, get and delete for one kind."""

    def list_objects(
        emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
    ) -> HandlerResult:
        with emu.lock:
            items = [kind.render(emu, stored) for stored in kind.objects(emu).values()]
        return list_page(req, items, kind.path)

    def get_object(
        emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
    ) -> HandlerResult:
        with emu.lock:
            return 200, kind.render(emu, existing(kind.objects(emu), kind.what, p[kind.param]))

    def delete_object(
        emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
    ) -> HandlerResult:
        ident = p[kind.param]
        with emu.lock:
            existing(kind.objects(emu), kind.what, ident)
            del kind.objects(emu)[ident]
            kind.forget(emu, ident)
        return 200, {"id": ident, "object": kind.object_type, "deleted": True}

    return list_objects, get_object, delete_object
