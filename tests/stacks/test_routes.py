"""The bridge's paths are one fact: the API Gateway routes, the Segment/Userflow resources'
paths (components/project.py) and the bridge's own routing must agree, or events are lost
as 404s at the edge. The bridge is asked directly, the way API Gateway hands it a request."""

from __future__ import annotations

import pytest

from bridge_code.ingest import FUNCTION_URL_PATHS, IngestApp
from bridge_code.runtime import BridgeRuntime
from bridge_code.settings import BridgeSettings
from components.aws.api import HEALTH_ROUTE_PATH, ROUTES, api_routes
from components.project import SEGMENT_ROUTE_PATH, USERFLOW_ROUTE_PATH
from tests.bridge.helpers import apigw_event, function_url_event

# What the bridge answers when it has no route for a path, or not for this method on it.
UNROUTED = {404, 405}


@pytest.fixture(scope="module")
def bridge() -> IngestApp:
    # No secret configured: a routed POST answers 503 (direction not configured), which is
    # still proof that the path and method reached a route.
    return IngestApp(BridgeRuntime.build(BridgeSettings()))


def status(bridge: IngestApp, method: str, path: str) -> int:
    return int(bridge.handle(apigw_event(method, path, b"{}"))["statusCode"])


@pytest.mark.parametrize("route_key", ROUTES)
def test_every_api_route_reaches_a_bridge_route(bridge: IngestApp, route_key: str) -> None:
    method, path = route_key.split(" ", 1)
    assert status(bridge, method, path) not in UNROUTED, route_key


def test_the_segment_and_userflow_paths_are_posted_routes_of_the_api() -> None:
    assert f"POST {SEGMENT_ROUTE_PATH}" in ROUTES
    assert f"POST {USERFLOW_ROUTE_PATH}" in ROUTES
    assert f"GET {HEALTH_ROUTE_PATH}" in ROUTES


@pytest.mark.parametrize("path", [SEGMENT_ROUTE_PATH, USERFLOW_ROUTE_PATH])
def test_the_bridge_routes_the_project_paths(bridge: IngestApp, path: str) -> None:
    assert status(bridge, "POST", path) not in UNROUTED, path


def test_a_path_the_bridge_does_not_serve_is_unrouted(bridge: IngestApp) -> None:
    # The check above can fail: a drifted path (here a near miss) is a 404 at the bridge.
    assert status(bridge, "POST", f"{SEGMENT_ROUTE_PATH}s") == 404



def test_with_functionurl_each_route_has_exactly_one_door() -> None:
    # userflowIngress: functionUrl moves Userflow's route from the API to the function URL:
    # the URL serves what the API no longer does, plus health, and nothing else.
    api = {route.split(" ", 1)[1] for route in api_routes("functionUrl")}
    assert api == {SEGMENT_ROUTE_PATH, HEALTH_ROUTE_PATH}
    assert {USERFLOW_ROUTE_PATH, HEALTH_ROUTE_PATH} == FUNCTION_URL_PATHS
    assert api_routes("apiGateway") == ROUTES


@pytest.mark.parametrize("path", sorted(FUNCTION_URL_PATHS))
def test_the_function_url_paths_reach_bridge_routes(bridge: IngestApp, path: str) -> None:
    method = "GET" if path == HEALTH_ROUTE_PATH else "POST"
    answer = bridge.handle(function_url_event(method, path, b"{}" if method == "POST" else None))
    assert int(answer["statusCode"]) not in UNROUTED, path
