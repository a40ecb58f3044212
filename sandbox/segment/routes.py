"""The Segment Public API's route table: method and path template → handler.

`SPEC_OPERATIONS` are the (method, path template) pairs the official spec declares, each
validated against it; the write key endpoints are alpha, outside the v36 spec, and validated
by hand in their handlers.
"""

from __future__ import annotations

from collections.abc import Callable

from sandbox.emulator import Route, Router
from sandbox.segment.catalog import DESTINATION_METADATA, SOURCE_METADATA
from sandbox.segment.handlers import (
    COLLECTIONS,
    DESTINATIONS,
    SOURCES,
    SUBSCRIPTIONS,
    add_write_key,
    catalog_handler,
    create_destination,
    create_source,
    create_subscription,
    delete_handler,
    delivery_metrics_handler,
    event_volume_handler,
    get_handler,
    list_handler,
    remove_write_key,
    update_handler,
)
from sandbox.segment.models import HandlerResult, Operation, PublicCall


def _build() -> Router[Operation]:
    routes: Router[Operation] = Router()

    def serve(
        method: str,
        template: str,
        run: Callable[[PublicCall], HandlerResult],
        in_spec: bool = True,
        report: bool = False,
    ) -> None:
        routes.add(method, template, Operation(run, in_spec, report))

    for kind in COLLECTIONS:
        item = f"{kind.path}/{{{kind.param}}}"
        serve("GET", kind.path, list_handler(kind))
        serve("GET", item, get_handler(kind))
        serve("PATCH", item, update_handler(kind))
        serve("DELETE", item, delete_handler(kind))
    serve("POST", SOURCES.path, create_source)
    serve("POST", DESTINATIONS.path, create_destination)
    serve("POST", SUBSCRIPTIONS.path, create_subscription)
    # A source's destinations: the destinations list, scoped by the owner the path names.
    serve("GET", "/sources/{sourceId}/connected-destinations", list_handler(DESTINATIONS))
    serve("POST", "/sources/{sourceId}/writekey", add_write_key, in_spec=False)
    serve("DELETE", "/sources/{sourceId}/writekey/{writeKey}", remove_write_key, in_spec=False)
    serve(
        "GET",
        "/catalog/sources/{sourceMetadataId}",
        catalog_handler(SOURCE_METADATA, "source catalog entry", "sourceMetadata"),
    )
    serve(
        "GET",
        "/catalog/destinations/{destinationMetadataId}",
        catalog_handler(DESTINATION_METADATA, "destination catalog entry", "destinationMetadata"),
    )
    # What Segment reports about itself: how an operator sees drops the Tracking API hides.
    serve("GET", "/events/volume", event_volume_handler, report=True)
    serve(
        "GET",
        "/destinations/{destinationId}/delivery-metrics",
        delivery_metrics_handler,
        report=True,
    )
    return routes


ROUTES = _build()
SPEC_OPERATIONS: tuple[tuple[str, str], ...] = tuple(
    (route.method.lower(), route.template) for route in ROUTES.routes if route.handler.in_spec
)


def spec_path(route: Route[Operation]) -> str | None:
    """The spec's path template of a route, or None for endpoints outside the spec."""
    return route.template if route.handler.in_spec else None
