"""The Userflow emulator: REST API (users, groups, events, webhook subscriptions) and signed
webhooks, with in-app activity simulated on demand.

`python -m sandbox userflow --port P` prints `READY userflow http://127.0.0.1:P` once listening.

This module holds the state, the shared emulator hooks, simulated activity and the command
line; `models` has the wire rules (credentials, errors, lists, upserts), `handlers` and
`routes` the REST API, `webhooks` the signed notifications, `attributes` the attribute rules.

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
import json
import math
from typing import Any, Unpack

from sandbox.emulator import (
    DeliveryOptions,
    Emulator,
    Fault,
    NoRoute,
    Route,
    add_delivery_arguments,
    add_server_arguments,
    delivery_options,
)
from sandbox.userflow.attributes import merge_attributes
from sandbox.userflow.models import (
    API_VERSION,
    SANDBOX_API_KEY,
    RestHandler,
    change,
    error,
    json_body,
    object_id,
    upsert_record,
)
from sandbox.userflow.routes import ROUTES
from sandbox.userflow.webhooks import notify
from sandbox.wire import (
    ApiError,
    HttpRequest,
    HttpResponse,
    JsonObject,
    clip,
    json_response,
    utc_now_iso,
)

__all__ = ["API_VERSION", "SANDBOX_API_KEY", "UserflowEmulator", "main"]


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
                return json_response(200, self._simulate(json_body(request)))
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
        body = json_body(request) if request.method in {"POST", "PATCH"} else None
        status, data = route.handler(self, request, params, body)
        return json_response(status, data)

    # -- request plumbing ----------------------------------------------------------------------

    @staticmethod
    def _match(request: HttpRequest) -> tuple[Route[RestHandler], dict[str, str]]:
        try:
            return ROUTES.match(request)
        except NoRoute as missing:
            if missing.path_known:
                raise error(
                    405, "method_not_allowed", f"{request.method} {clip(request.path)}"
                ) from None
            raise error(404, "not_found", f"no such endpoint {clip(request.path)}") from None

    def _authenticate(self, request: HttpRequest) -> None:
        scheme, _, key = request.header("Authorization").partition(" ")
        if scheme.lower() != "bearer" or key.strip() not in self.api_keys:
            raise error(401, "unauthorized", "missing or invalid API key (Bearer ak_…)")

    def new_id(self) -> str:
        raw = self.ids.hex(32)
        return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"

    # -- domain operations (lock held by callers) ------------------------------------------------

    def upsert_group(self, group_id: str, attributes: Any) -> JsonObject | None:
        return upsert_record(self.groups, "group", group_id, attributes, utc_now_iso())

    def ensure_user(self, user_id: str) -> JsonObject | None:
        """A user for an event: created bare if unknown, never changed if known."""
        return upsert_record(self.users, "user", user_id, None, utc_now_iso())

    def render_user(self, user: JsonObject) -> JsonObject:
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

    def record_event(
        self, user_id: str, name: str, attributes: Any, group_id: str | None, at: str | None
    ) -> list[JsonObject]:
        changes: list[JsonObject] = []
        created_user = self.ensure_user(user_id)
        if created_user:
            changes.append(created_user)
        if group_id is not None and group_id not in self.groups:
            created_group = self.upsert_group(group_id, None)
            if created_group:
                changes.append(created_group)
        now = utc_now_iso()
        event = {
            "id": self.new_id(),
            "object": "event",
            "name": name,
            "attributes": merge_attributes({}, attributes),
            "user_id": user_id,
            "group_id": group_id,
            "time": at or now,
            "created_at": now,
        }
        self.events.append(event)
        changes.append(change(f"event.tracked.{name}", event))
        return changes

    # -- simulated in-app activity -------------------------------------------------------------

    def _simulate(self, body: JsonObject) -> JsonObject:
        user_id = object_id(body.get("user_id"), "user_id")
        activity = body.get("activity")
        group_raw = body.get("group_id")
        group_id = object_id(group_raw, "group_id") if group_raw is not None else None
        with self.lock:
            if user_id not in self.users:
                raise error(
                    404, "not_found", f"user {clip(user_id)!r} not found: identify it first"
                )
            if activity == "flow":
                flow = {
                    "flow_id": self.new_id(),
                    "flow_name": str(body.get("flow_name") or "Sandbox onboarding"),
                    "flow_version_id": self.new_id(),
                    "flow_version_number": 1,
                    "flow_type": "flow",
                }
                changes = self.record_event(user_id, "flow_started", flow, group_id, None)
                changes += self.record_event(user_id, "flow_completed", flow, group_id, None)
            elif activity == "checklist_task":
                task = {
                    "checklist_id": self.new_id(),
                    "checklist_name": str(body.get("checklist_name") or "Getting started"),
                    "checklist_version_id": self.new_id(),
                    "task_cvid": self.new_id(),
                    "task_name": str(body.get("task_name") or "Invite a teammate"),
                }
                changes = self.record_event(
                    user_id, "checklist_task_completed", task, group_id, None
                )
            else:
                raise error(400, "invalid_request", "activity must be 'flow' or 'checklist_task'")
        notify(self, changes)
        events = [c["object"] for c in changes if c["object"]["object"] == "event"]
        return {"events": json.loads(json.dumps(events))}


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
