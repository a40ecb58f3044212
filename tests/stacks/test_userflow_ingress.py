"""`userflowIngress: functionUrl` under Pulumi mocks: Userflow's webhooks go to the ingest
function's own URL (public, with the two statements AWS requires), the API loses its
`/userflow` route (one door per route), the export and the webhook subscription point at the
URL, the 5xx alarm and the dashboard watch it. The default keeps every resource and URN."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.aws.dashboard import GRID_COLUMNS
from tests.stacks.conftest import RunStack, succeeded
from tests.stacks.graph import Run, engine_urn, environment, inputs, one, resources
from tests.stacks.harness import PROJECT
from tests.stacks.test_stack_programs import (
    ALARM,
    AWS_STACKS,
    FUNCTION,
    NAMED_BY,
    UNNAMED,
)

FUNCTION_URL = "aws:lambda/functionUrl:FunctionUrl"
PERMISSION = "aws:lambda/permission:Permission"
ROUTE = "aws:apigatewayv2/route:Route"
COMPONENT = "userflow-segment:index:UserflowFunctionUrl"
AWS_BRIDGE = "userflow-segment:index:AwsBridge"
WEBHOOK = "pulumi-python:dynamic/userflow:WebhookSubscription"
DESTINATION = "pulumi-python:dynamic/segment:WebhookDestination"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
# What functionUrl adds to a stack, by logical name (and nothing else is new).
ADDED = {
    "userflow-ingress": COMPONENT,
    "userflow-ingress-url": FUNCTION_URL,
    "userflow-ingress-invoke-url": PERMISSION,
    "userflow-ingress-invoke": PERMISSION,
}


@pytest.fixture(params=AWS_STACKS)
def url_run(request: pytest.FixtureRequest, run_stack: RunStack) -> Run:
    return succeeded(run_stack(request.param, userflowIngress="functionUrl"))


def ingest_name(run: Run) -> str:
    name: str = one(run, FUNCTION, "functions-ingest")["inputs"]["name"]
    return name


def function_url(run: Run) -> str:
    # The mocks answer as AWS does: https://<url-id>.lambda-url.<region>.on.aws/
    (url,) = resources(run, FUNCTION_URL)
    return f"https://url-{url['inputs']['functionName']}.lambda-url.{run['config']['aws:region']}.on.aws/"


def test_the_ingest_function_gets_a_public_url_with_both_statements(url_run: Run) -> None:
    (url,) = resources(url_run, FUNCTION_URL)
    assert inputs(url) == {"functionName": ingest_name(url_run), "authorizationType": "NONE",
                           "invokeMode": "BUFFERED"}
    statements = {r["name"]: r["inputs"] for r in resources(url_run, PERMISSION)
                  if r["name"].startswith("userflow-ingress-")}
    env = environment(url_run)
    assert statements == {
        "userflow-ingress-invoke-url": {
            "action": "lambda:InvokeFunctionUrl", "functionUrlAuthType": "NONE",
            "principal": "*", "function": ingest_name(url_run),
            "statementId": f"{PROJECT}-{env}-url-invoke-url"},
        "userflow-ingress-invoke": {
            "action": "lambda:InvokeFunction", "invokedViaFunctionUrl": True,
            "principal": "*", "function": ingest_name(url_run),
            "statementId": f"{PROJECT}-{env}-url-invoke"},
    }
    # The API's own permission is untouched: Segment's route still reaches ingest.
    api = one(url_run, PERMISSION, "api-invoke-ingest")["inputs"]
    assert api["principal"] == "apigateway.amazonaws.com"


def test_the_api_keeps_segment_and_health_but_not_userflow(url_run: Run) -> None:
    routes = {r["inputs"]["routeKey"] for r in resources(url_run, ROUTE)}
    assert routes == {"POST /segment", "GET /health"}


def test_userflow_is_pointed_at_the_url_and_segment_still_at_the_api(url_run: Run) -> None:
    exports = url_run["exports"]
    bridge_url = exports["bridgeUrl"]
    url = function_url(url_run)
    assert url.endswith("/") and ".lambda-url." in url
    assert exports["userflowRouteUrl"] == f"{url}userflow"  # one slash, not two
    assert exports["segmentRouteUrl"] == f"{bridge_url}/segment"
    assert exports["healthUrl"] == f"{bridge_url}/health"
    assert ".execute-api." in bridge_url
    (webhook,) = resources(url_run, WEBHOOK)
    assert inputs(webhook)["bridge_url"] == url.rstrip("/")
    (destination,) = resources(url_run, DESTINATION)
    assert inputs(destination)["bridge_url"] == bridge_url
    # Userflow is told to deliver only once the URL lets the public in.
    (integration,) = [r for r in resources(url_run) if r["name"] == "integration"]
    added = {r["urn"] for r in resources(url_run) if r["name"] in ADDED and r["custom"]}
    assert added <= set(integration["dependencies"])


def test_functionurl_adds_a_component_of_the_bridge_and_keeps_every_other_urn(
    run_stack: RunStack,
) -> None:
    default = succeeded(run_stack("production"))
    url_run = succeeded(run_stack("production", userflowIngress="functionUrl"))
    before = {engine_urn(default, r) for r in resources(default)}
    after = {engine_urn(url_run, r): r for r in resources(url_run)}
    gone = before - set(after)
    assert gone == {engine_urn(default, one(default, ROUTE, "api-post-userflow"))}
    new = {r["name"]: r["type"] for urn, r in after.items() if urn not in before}
    assert new == ADDED
    (bridge,) = resources(url_run, AWS_BRIDGE)
    (component,) = resources(url_run, COMPONENT)
    assert component["parent"] == bridge["urn"] and component["aliases"] == []
    assert {r["parent"] for r in resources(url_run) if r["name"] in ADDED
            and r["custom"]} == {component["urn"]}
    # Production's protection covers the new resources too.
    assert all(r["protect"] for r in resources(url_run) if r["name"] in ADDED)


def test_the_default_builds_no_function_url(run_stack: RunStack) -> None:
    for stack in AWS_STACKS:
        run = succeeded(run_stack(stack))
        assert resources(run, FUNCTION_URL) == [] and resources(run, COMPONENT) == []
        assert not [r for r in resources(run, PERMISSION) if r["inputs"]["principal"] == "*"]
        assert run["exports"]["userflowRouteUrl"] == run["exports"]["bridgeUrl"] + "/userflow"


def test_the_new_types_are_named_after_the_environment_or_unnamed(url_run: Run) -> None:
    env = environment(url_run)
    for resource in resources(url_run):
        typ = resource["type"]
        if resource["custom"] and not typ.startswith("pulumi-python:dynamic/"):
            assert typ in NAMED_BY or typ in UNNAMED or typ == FUNCTION_URL, typ
            if typ in NAMED_BY:
                assert env in resource["inputs"][NAMED_BY[typ]], (typ, resource["name"])
    # The URL has no name of its own (AWS picks the url-id); it carries the function's.
    (url,) = resources(url_run, FUNCTION_URL)
    assert env in url["inputs"]["functionName"]


def queries(run: Run) -> dict[str, dict[str, Any]]:
    alarm = one(run, ALARM, "alarms-api-5xx-rate")["inputs"]
    return {q["id"]: q for q in alarm["metricQueries"]}


def test_the_5xx_rate_alarm_adds_the_urls_answers_to_the_apis(url_run: Run) -> None:
    found = queries(url_run)
    assert found["rate"]["returnData"] is True
    assert found["rate"]["expression"] == "IF(requests > 0, 100 * errors / requests, 0)"
    assert found["errors"]["expression"] == "FILL(api_errors, 0) + FILL(url_errors, 0)"
    assert found["requests"]["expression"] == "FILL(api_requests, 0) + FILL(url_requests, 0)"
    metrics = {query_id: (q["metric"]["namespace"], q["metric"]["metricName"],
                          q["metric"]["dimensions"])
               for query_id, q in found.items() if "metric" in q}
    ingest = {"FunctionName": ingest_name(url_run)}
    assert metrics["url_errors"] == ("AWS/Lambda", "Url5xxCount", ingest)
    assert metrics["url_requests"] == ("AWS/Lambda", "UrlRequestCount", ingest)
    assert metrics["api_errors"][:2] == ("AWS/ApiGateway", "5xx")
    assert metrics["api_requests"][:2] == ("AWS/ApiGateway", "Count")
    assert set(found) == {"rate", "errors", "requests", *metrics}


def test_the_default_5xx_rate_alarm_watches_the_api_alone(run_stack: RunStack) -> None:
    found = queries(succeeded(run_stack("production")))
    assert set(found) == {"rate", "errors", "requests"}
    assert {q["metric"]["namespace"] for i, q in found.items() if i != "rate"} == {
        "AWS/ApiGateway"}


def test_the_dashboard_graphs_the_url_beside_the_api(url_run: Run) -> None:
    (dashboard,) = resources(url_run, DASHBOARD)
    widgets = json.loads(dashboard["inputs"]["dashboardBody"])["widgets"]
    (graph,) = [w for w in widgets if w["properties"].get("title", "").startswith(
        "Userflow function URL")]
    plotted = {(m[0], m[1], m[2], m[3]) for m in graph["properties"]["metrics"]}
    ingest = ingest_name(url_run)
    assert plotted == {("AWS/Lambda", name, "FunctionName", ingest)
                       for name in ("UrlRequestCount", "Url4xxCount", "Url5xxCount")}
    row = [w for w in widgets if w["y"] == graph["y"]]
    assert sum(w["width"] for w in row) == GRID_COLUMNS and len(row) == 4
    assert any(w["properties"]["title"].startswith("API (Segment, health)") for w in row)


def test_the_local_stack_refuses_functionurl_naming_the_key(run_stack: RunStack) -> None:
    run = run_stack("local", bridgeUrl="http://127.0.0.1:9876", userflowIngress="functionUrl")
    assert run.get("error_type") == "ConfigError", run.get("traceback")
    assert f"config {PROJECT}:userflowIngress: may be functionUrl only when hosting=aws" in (
        run["error"])
