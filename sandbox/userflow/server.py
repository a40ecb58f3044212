"""The Userflow emulator: REST API (users, groups, events, webhook subscriptions) and signed
webhooks, with in-app activity simulated on demand.

`python -m sandbox userflow --port P` prints `READY userflow http://127.0.0.1:P` once listening.

Wire rules (NOTES §4-5): `Authorization: Bearer ak_…`, `Userflow-Version: 2020-01-03` on every
call (400 otherwise), JSON in and out, errors `{"error": {"code", "message"}}`, lists
`{"object": "list", "data", "has_more", "next_page_url"}` with `limit` (1..100, default 10) and
`starting_after`.

Webhooks: every change to a user or group (`user.created`/`user.updated`,
`group.created`/`group.updated`) and every tracked event (`event.tracked.<name>`) becomes one
notification, sent on background threads to each enabled subscription whose topics match
(`*`, or a topic equal to or a dot-prefix of the notification's), signed
`Userflow-Signature: t=<unix>,v1=hex(HMAC-SHA256(secret, f"{t}.{body}"))`, retried on any
non-2xx or network error with backoff on a compressed clock.

Inspection (`/__sandbox__/`): `state` holds `users`, `groups`, `memberships`, `events`,
`webhook_subscriptions` (with their secrets), `notifications` (id, topic, subscription ids),
`deliveries` (one entry per attempt: status, attempt, latency_ms, error, notification and
subscription ids, topic), `deliveries_pending` and `faults`; also `requests`, `faults`, `reset`
and `simulate` (`{"user_id", "activity": "flow" | "checklist_task", "group_id"?, "flow_name"?,
"checklist_name"?, "task_name"?}` → `{"events": [...]}`).

Options (keyword arguments, or the command's flags): `seed` (ids and secrets; default 0),
`api_keys` (extra accepted keys), `delivery_attempts` (5), `delivery_backoff_s` (0.2, doubled per
retry), `delivery_timeout_s` (10).

Choices where the real API is silent (documented for the clients built against this):
- One emulator is one Userflow environment: every accepted key reaches the same data (a real
  key reaches only its own environment; run one emulator per environment to model that).
- `POST /events` for an unknown user creates that user (no attributes, `user.created` fires);
  an unknown `group_id` creates the group. Events need a user: there are no anonymous ones.
- An upsert that changes nothing fires no `user.updated`/`group.updated` (no webhook echo).
- The notification's `topic` for an event is the full `event.tracked.<name>`.
- One notification id per change, shared by every subscription it goes to (receivers dedupe
  on it).
- A plain `null` attribute value removes the attribute.
- `POST /__sandbox__/simulate` needs an existing user (in-app activity needs an identified user).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Unpack
from urllib.parse import quote

from sandbox.emulator import (
    ApiError,
    DeliveryOptions,
    Emulator,
    Fault,
    HttpRequest,
    HttpResponse,
    JsonObject,
    NoRoute,
    OutboundRequest,
    Route,
    Router,
    add_delivery_arguments,
    add_server_arguments,
    compact_json,
    delivery_options,
    json_response,
    utc_now_iso,
)
from sandbox.userflow.attributes import InvalidAttribute, merge_attributes, validate_attributes

# Sandbox-only credential, published in docs/ARCHITECTURE.md.
SANDBOX_API_KEY = "ak_sandbox_local"
API_VERSION = "2020-01-03"
SIGNATURE_HEADER = "Userflow-Signature"
LIST_LIMIT_DEFAULT = 10
LIST_LIMIT_MAX = 100
TOPIC_PATTERN = re.compile(
    r"^(\*|user(\.(created|updated))?|group(\.(created|updated))?|event(\.tracked(\.[^\s]+)?)?)$"
)
WEBHOOK_USER_AGENT = "Userflow-Webhooks"


def userflow_signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def topic_matches(subscribed: str, topic: str) -> bool:
    """Hierarchical topics: `*` is everything, `event` covers `event.tracked.flow_started`."""
    return subscribed == "*" or topic == subscribed or topic.startswith(subscribed + ".")


def _change(topic: str, obj: JsonObject) -> JsonObject:
    """A change to notify about, with the object as it is now (later writes don't leak in)."""
    snapshot: JsonObject = json.loads(json.dumps(obj))
    return {"topic": topic, "object": snapshot}


def error(status: int, code: str, message: str) -> ApiError:
    return ApiError(json_response(status, {"error": {"code": code, "message": message}}))


def _object_id(value: Any, field: str) -> str:
    """Ids are strings; numbers are accepted and stringified (as JSON clients often send)."""
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        raise error(400, "invalid_request", f"{field} must be a non-empty string")
    return str(value)


def _existing(objects: Mapping[str, JsonObject], what: str, ident: str) -> JsonObject:
    """The stored object, or the API's 404 naming what was looked for."""
    found = objects.get(ident)
    if found is None:
        raise error(404, "not_found", f"{what} {ident!r} not found")
    return found


HandlerResult = tuple[int, Any]
RestHandler = Callable[["UserflowEmulator", HttpRequest, dict[str, str], Any], HandlerResult]
_ROUTES: Router[RestHandler] = Router()
_route = _ROUTES.route


class UserflowEmulator(Emulator):
    name = "userflow"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int | None = 0,
        api_keys: list[str] | None = None,
        **delivery: Unpack[DeliveryOptions],
    ) -> None:
        super().__init__(host, port, seed=seed, **delivery)
        self.api_keys = {SANDBOX_API_KEY, *(api_keys or [])}
        self.reset_state()

    # -- state ---------------------------------------------------------------------------------

    def reset_state(self) -> None:
        with self.lock:
            self.users: dict[str, JsonObject] = {}
            self.groups: dict[str, JsonObject] = {}
            self.memberships: dict[tuple[str, str], JsonObject] = {}
            self.events: list[JsonObject] = []
            self.subscriptions: dict[str, JsonObject] = {}
            self.notifications: list[JsonObject] = []

    def stored_state(self) -> JsonObject:
        with self.lock:
            snapshot: JsonObject = json.loads(
                json.dumps(
                    {
                        "users": list(self.users.values()),
                        "groups": list(self.groups.values()),
                        "memberships": list(self.memberships.values()),
                        "events": self.events,
                        "webhook_subscriptions": list(self.subscriptions.values()),
                        "notifications": self.notifications,
                    }
                )
            )
        return snapshot

    # -- shared emulator hooks -----------------------------------------------------------------

    def fault_response(self, fault: Fault, request: HttpRequest) -> HttpResponse:
        status = fault.status or 500
        code = {429: "rate_limited", 404: "not_found"}.get(status, "injected_fault")
        response = json_response(status, {"error": {"code": code, "message": "injected fault"}})
        if fault.retry_after is not None:
            # Whole seconds, rounded up: never earlier than the fault clears.
            response.headers["Retry-After"] = str(math.ceil(fault.retry_after))
        elif status == 429:
            response.headers["Retry-After"] = "1"
        return response

    def handle_sandbox_extra(self, request: HttpRequest, route: str) -> HttpResponse | None:
        if request.method == "POST" and route == "simulate":
            try:
                return json_response(200, self._simulate(self._json_body(request)))
            except ApiError as exc:
                return exc.response
        return None

    def handle_api(self, request: HttpRequest) -> HttpResponse:
        route, params = self._match(request)
        self._authenticate(request)
        version = request.header("Userflow-Version")
        if version != API_VERSION:
            raise error(
                400,
                "invalid_version",
                f"Userflow-Version header must be {API_VERSION!r}"
                + (f", got {version!r}" if version else ", and it is missing"),
            )
        body = self._json_body(request) if request.method in {"POST", "PATCH"} else None
        status, data = route.handler(self, request, params, body)
        return json_response(status, data)

    # -- request plumbing ----------------------------------------------------------------------

    @staticmethod
    def _match(request: HttpRequest) -> tuple[Route[RestHandler], dict[str, str]]:
        try:
            return _ROUTES.match(request)
        except NoRoute as missing:
            if missing.path_known:
                raise error(405, "method_not_allowed", f"{request.method} {request.path}") from None
            raise error(404, "not_found", f"no such endpoint {request.path}") from None

    def _authenticate(self, request: HttpRequest) -> None:
        scheme, _, key = request.header("Authorization").partition(" ")
        if scheme.lower() != "bearer" or key.strip() not in self.api_keys:
            raise error(401, "unauthorized", "missing or invalid API key (Bearer ak_…)")

    @staticmethod
    def _json_body(request: HttpRequest) -> JsonObject:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError as exc:
            raise error(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise error(400, "invalid_request", "request body must be a JSON object")
        return body

    @staticmethod
    def _attributes(body: Mapping[str, Any]) -> Any:
        attributes = body.get("attributes")
        try:
            validate_attributes(attributes)
        except InvalidAttribute as exc:
            raise error(400, "invalid_attribute", str(exc)) from exc
        return attributes

    def _list(
        self, request: HttpRequest, items: list[JsonObject], path: str
    ) -> tuple[int, JsonObject]:
        raw_limit = request.query_value("limit")
        try:
            limit = int(raw_limit) if raw_limit is not None else LIST_LIMIT_DEFAULT
        except ValueError as exc:
            raise error(400, "invalid_request", "limit must be an integer") from exc
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise error(400, "invalid_request", f"limit must be between 1 and {LIST_LIMIT_MAX}")
        after = request.query_value("starting_after")
        start = 0
        if after:
            ids = [item["id"] for item in items]
            if after not in ids:
                raise error(400, "invalid_request", f"starting_after {after!r} is not in the list")
            start = ids.index(after) + 1
        page = items[start : start + limit]
        has_more = start + limit < len(items)
        next_url = (
            f"{path}?limit={limit}&starting_after={quote(page[-1]['id'], safe='')}"
            if has_more and page
            else None
        )
        return 200, {
            "object": "list",
            "data": page,
            "has_more": has_more,
            "next_page_url": next_url,
        }

    def _new_id(self) -> str:
        raw = self.ids.hex(32)
        return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"

    # -- domain operations (lock held by callers) ------------------------------------------------

    @staticmethod
    def _upsert_record(
        records: dict[str, JsonObject],
        object_type: str,
        record_id: str,
        attributes: Any,
        now: str,
        changed_besides: bool = False,
    ) -> JsonObject | None:
        """Create or merge a user or group; the change to notify about, None if unchanged.

        `changed_besides`: something outside the attributes changed (a user's memberships).
        """
        existing = records.get(record_id)
        if existing is None:
            record = {
                "id": record_id,
                "object": object_type,
                "attributes": merge_attributes({}, attributes),
                "created_at": now,
                "updated_at": now,
            }
            records[record_id] = record
            return _change(f"{object_type}.created", record)
        merged = merge_attributes(existing["attributes"], attributes)
        if merged == existing["attributes"] and not changed_besides:
            return None
        existing.update(attributes=merged, updated_at=now)
        return _change(f"{object_type}.updated", existing)

    def _upsert_group(self, group_id: str, attributes: Any) -> JsonObject | None:
        return self._upsert_record(self.groups, "group", group_id, attributes, utc_now_iso())

    def _ensure_user(self, user_id: str) -> JsonObject | None:
        """A user for an event: created bare if unknown, never changed if known."""
        return self._upsert_record(self.users, "user", user_id, None, utc_now_iso())

    def _render_user(self, user: JsonObject) -> JsonObject:
        memberships = [
            {
                "object": "group_membership",
                "attributes": m["attributes"],
                "created_at": m["created_at"],
                "group": self.groups[m["group_id"]],
            }
            for key, m in self.memberships.items()
            if key[0] == user["id"] and m["group_id"] in self.groups
        ]
        rendered: JsonObject = json.loads(json.dumps({**user, "memberships": memberships}))
        return rendered

    def _record_event(
        self, user_id: str, name: str, attributes: Any, group_id: str | None, at: str | None
    ) -> list[JsonObject]:
        changes: list[JsonObject] = []
        created_user = self._ensure_user(user_id)
        if created_user:
            changes.append(created_user)
        if group_id is not None and group_id not in self.groups:
            created_group = self._upsert_group(group_id, None)
            if created_group:
                changes.append(created_group)
        now = utc_now_iso()
        event = {
            "id": self._new_id(),
            "object": "event",
            "name": name,
            "attributes": merge_attributes({}, attributes),
            "user_id": user_id,
            "group_id": group_id,
            "time": at or now,
            "created_at": now,
        }
        self.events.append(event)
        changes.append(_change(f"event.tracked.{name}", event))
        return changes

    # -- webhooks ------------------------------------------------------------------------------

    def _notify(self, changes: list[JsonObject]) -> None:
        """Queue one signed notification per change for each matching enabled subscription."""
        outbound: list[OutboundRequest] = []
        with self.lock:
            for change in changes:
                topic = change["topic"]
                notification = {
                    "id": self._new_id(),
                    "object": "webhook_notification",
                    "api_version": API_VERSION,
                    "created_at": utc_now_iso(),
                    "topic": topic,
                    "data": {"object": change["object"]},
                }
                body = compact_json(notification)
                targets = [
                    s
                    for s in self.subscriptions.values()
                    if not s["disabled"] and any(topic_matches(t, topic) for t in s["topics"])
                ]
                self.notifications.append(
                    {
                        "id": notification["id"],
                        "topic": topic,
                        "subscription_ids": [s["id"] for s in targets],
                    }
                )
                for subscription in targets:
                    stamp = int(time.time())
                    signature = userflow_signature(subscription["secret"], stamp, body)
                    outbound.append(
                        OutboundRequest(
                            delivery_id=f"{notification['id']}:{subscription['id']}",
                            url=subscription["url"],
                            method="POST",
                            headers={
                                "Content-Type": "application/json",
                                "User-Agent": WEBHOOK_USER_AGENT,
                                SIGNATURE_HEADER: f"t={stamp},v1={signature}",
                            },
                            body=body,
                            retryable=lambda status: True,
                            meta={
                                "notification_id": notification["id"],
                                "subscription_id": subscription["id"],
                                "topic": topic,
                            },
                        )
                    )
        for request in outbound:
            self.deliveries.submit(request)

    # -- simulated in-app activity -------------------------------------------------------------

    def _simulate(self, body: JsonObject) -> JsonObject:
        user_id = _object_id(body.get("user_id"), "user_id")
        activity = body.get("activity")
        group_raw = body.get("group_id")
        group_id = _object_id(group_raw, "group_id") if group_raw is not None else None
        with self.lock:
            if user_id not in self.users:
                raise error(404, "not_found", f"user {user_id!r} not found: identify it first")
            if activity == "flow":
                flow = {
                    "flow_id": self._new_id(),
                    "flow_name": str(body.get("flow_name") or "Sandbox onboarding"),
                    "flow_version_id": self._new_id(),
                    "flow_version_number": 1,
                    "flow_type": "flow",
                }
                changes = self._record_event(user_id, "flow_started", flow, group_id, None)
                changes += self._record_event(user_id, "flow_completed", flow, group_id, None)
            elif activity == "checklist_task":
                task = {
                    "checklist_id": self._new_id(),
                    "checklist_name": str(body.get("checklist_name") or "Getting started"),
                    "checklist_version_id": self._new_id(),
                    "task_cvid": self._new_id(),
                    "task_name": str(body.get("task_name") or "Invite a teammate"),
                }
                changes = self._record_event(
                    user_id, "checklist_task_completed", task, group_id, None
                )
            else:
                raise error(400, "invalid_request", "activity must be 'flow' or 'checklist_task'")
        self._notify(changes)
        events = [c["object"] for c in changes if c["object"]["object"] == "event"]
        return {"events": json.loads(json.dumps(events))}


# -- REST handlers --------------------------------------------------------------------------------


@_route("POST", "/users")
def _upsert_user(
    emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
) -> HandlerResult:
    user_id = _object_id(body.get("id"), "id")
    attributes = emu._attributes(body)
    if "groups" in body and "memberships" in body:
        raise error(400, "invalid_request", "send either groups or memberships, never both")
    wanted: list[tuple[str, Any, Any]] = []  # (group id, group attributes, membership attributes)
    for entry in body.get("groups") or []:
        if not isinstance(entry, dict):
            raise error(400, "invalid_request", "groups entries must be objects {id, attributes}")
        wanted.append((_object_id(entry.get("id"), "groups[].id"), emu._attributes(entry), None))
    for entry in body.get("memberships") or []:
        group = entry.get("group") if isinstance(entry, dict) else None
        if not isinstance(group, dict):
            raise error(400, "invalid_request", "memberships entries need a group object")
        wanted.append(
            (
                _object_id(group.get("id"), "memberships[].group.id"),
                emu._attributes(group),
                emu._attributes(entry),
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
            group_change = emu._upsert_group(group_id, group_attributes)
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
        user_change = emu._upsert_record(
            emu.users, "user", user_id, attributes, now, changed_besides=membership_changed
        )
        if user_change:
            changes.insert(0, user_change)
        rendered = emu._render_user(emu.users[user_id])
    emu._notify(changes)
    return 200, rendered


@_route("POST", "/groups")
def _upsert_group(
    emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
) -> HandlerResult:
    group_id = _object_id(body.get("id"), "id")
    attributes = emu._attributes(body)
    with emu.lock:
        change = emu._upsert_group(group_id, attributes)
        group = json.loads(json.dumps(emu.groups[group_id]))
    emu._notify([change] if change else [])
    return 200, group


@_route("POST", "/events")
def _track_event(
    emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
) -> HandlerResult:
    user_id = _object_id(body.get("user_id"), "user_id")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise error(400, "invalid_request", "name must be a non-empty string")
    attributes = emu._attributes(body)
    group_raw = body.get("group_id")
    group_id = _object_id(group_raw, "group_id") if group_raw is not None else None
    at = body.get("time")
    if at is not None and not isinstance(at, str):
        raise error(400, "invalid_request", "time must be an ISO 8601 string")
    with emu.lock:
        changes = emu._record_event(user_id, name, attributes, group_id, at)
    emu._notify(changes)
    return 200, json.loads(json.dumps(changes[-1]["object"]))


@_route("GET", "/events")
def _list_events(
    emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
) -> HandlerResult:
    user_id = req.query_value("user_id")
    with emu.lock:
        events = [e for e in emu.events if user_id is None or e["user_id"] == user_id]
        events = json.loads(json.dumps(events))
    return emu._list(req, events, "/events")


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


@_route("POST", "/webhook_subscriptions")
def _create_subscription(
    emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
) -> HandlerResult:
    if body.get("api_version") != API_VERSION:
        raise error(400, "invalid_request", f"api_version must be {API_VERSION!r}")
    _check_subscription_fields(body, partial=False)
    with emu.lock:
        subscription = {
            "id": emu._new_id(),
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


@_route("PATCH", "/webhook_subscriptions/{subscription_id}")
def _update_subscription(
    emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
) -> HandlerResult:
    unknown = set(body) - {"url", "topics", "disabled"}
    if unknown:
        raise error(400, "invalid_request", f"cannot update {sorted(unknown)}")
    _check_subscription_fields(body, partial=True)
    with emu.lock:
        subscription = _existing(emu.subscriptions, "webhook subscription", p["subscription_id"])
        subscription.update(
            {key: body[key] for key in ("url", "topics", "disabled") if key in body}
        )
        return 200, dict(subscription)


# -- list, get and delete: the same for users, groups and webhook subscriptions --------------------


@dataclass(frozen=True)
class _Kind:
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
    _Kind(
        what="user",
        object_type="user",
        path="/users",
        param="user_id",
        objects=lambda emu: emu.users,
        render=lambda emu, user: emu._render_user(user),
        forget=_forget_user,
    ),
    _Kind(
        what="group",
        object_type="group",
        path="/groups",
        param="group_id",
        objects=lambda emu: emu.groups,
        render=_deep_copy,
        forget=_forget_group,
    ),
    _Kind(
        what="webhook subscription",
        object_type="webhook_subscription",
        path="/webhook_subscriptions",
        param="subscription_id",
        objects=lambda emu: emu.subscriptions,
        render=_deep_copy,
        forget=lambda emu, subscription_id: None,
    ),
)


def _register_kind(kind: _Kind) -> None:
    def list_objects(
        emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
    ) -> HandlerResult:
        with emu.lock:
            items = [kind.render(emu, stored) for stored in kind.objects(emu).values()]
        return emu._list(req, items, kind.path)

    def get_object(
        emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
    ) -> HandlerResult:
        with emu.lock:
            return 200, kind.render(emu, _existing(kind.objects(emu), kind.what, p[kind.param]))

    def delete_object(
        emu: UserflowEmulator, req: HttpRequest, p: dict[str, str], body: Any
    ) -> HandlerResult:
        ident = p[kind.param]
        with emu.lock:
            _existing(kind.objects(emu), kind.what, ident)
            del kind.objects(emu)[ident]
            kind.forget(emu, ident)
        return 200, {"id": ident, "object": kind.object_type, "deleted": True}

    item = f"{kind.path}/{{{kind.param}}}"
    _ROUTES.add("GET", kind.path, list_objects)
    _ROUTES.add("GET", item, get_object)
    _ROUTES.add("DELETE", item, delete_object)


for _kind in KINDS:
    _register_kind(_kind)


# -- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox userflow", description="Userflow emulator: REST API and webhooks"
    )
    add_server_arguments(parser, seeded="ids and secrets")
    parser.add_argument("--api-key", action="append", default=[], help="extra accepted API key")
    add_delivery_arguments(parser)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    emulator = UserflowEmulator(
        args.host, args.port, seed=args.seed, api_keys=args.api_key, **delivery_options(args)
    )
    return emulator.serve_until_interrupted()
