"""The Userflow REST API's route table: method and path template → handler."""

from __future__ import annotations

from sandbox.emulator import Router
from sandbox.userflow.handlers import (
    KINDS,
    create_subscription,
    kind_handlers,
    list_events,
    track_event,
    update_subscription,
    upsert_group,
    upsert_user,
)
from sandbox.userflow.models import RestHandler


def _build() -> Router[RestHandler]:
    routes: Router[RestHandler] = Router()
    routes.add("POST", "/users", upsert_user)
    routes.add("POST", "/groups", upsert_group)
    routes.add("POST", "/events", track_event)
    routes.add("GET", "/events", list_events)
    routes.add("POST", "/webhook_subscriptions", create_subscription)
    routes.add("PATCH", "/webhook_subscriptions/{subscription_id}", update_subscription)
    for kind in KINDS:
        list_objects, get_object, delete_object = kind_handlers(kind)
        item = f"{kind.path}/{{{kind.param}}}"
        routes.add("GET", kind.path, list_objects)
        routes.add("GET", item, get_object)
        routes.add("DELETE", item, delete_object)
    return routes


ROUTES = _build()
