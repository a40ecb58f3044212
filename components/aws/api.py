"""The bridge's public face: an API Gateway HTTP API routing to the ingest function."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.project import (
    SEGMENT_ROUTE_PATH,
    USERFLOW_ROUTE_PATH,
    UserflowIngress,
    component_type,
)

# Health is the bridge's own route: nothing outside the bridge and this API calls it.
HEALTH_ROUTE_PATH = "/health"
# The routes bridge_code/ingest.py serves (the local bridge serves the same ones).
USERFLOW_ROUTE = f"POST {USERFLOW_ROUTE_PATH}"
ROUTES = (f"POST {SEGMENT_ROUTE_PATH}", USERFLOW_ROUTE, f"GET {HEALTH_ROUTE_PATH}")
STAGE_NAME = "$default"  # the only stage whose URL carries no stage path
# HTTP APIs cap an integration at 30 s.
MAX_INTEGRATION_TIMEOUT_MS = 30_000
# One JSON object per request: what an operator needs, never the body or headers (secrets,
# signatures and personal data stay out of the logs). CloudWatch bills every byte ingested and
# this line is the largest per event, so it carries only what the ingest function's own log
# line cannot (that line has the status and counts of every request that reached it): the id
# joining the two, the route and the answer API Gateway gave (also to throttled requests that
# never reached the function), the integration's status and error, the latency and the
# caller's address. CloudWatch stamps each line with its time; the user agent is the sender's
# (Segment's or Userflow's) and the same on every line.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "status": "$context.status",
        "integrationStatus": "$context.integrationStatus",
        "integrationError": "$context.integrationErrorMessage",
        "ms": "$context.responseLatency",
        "ip": "$context.identity.sourceIp",
        "route": "$context.routeKey",
    },
    sort_keys=True,
    separators=(",", ":"),
)


@dataclass(frozen=True)
class BridgeApiArgs:
    """What the API component needs."""

    name_prefix: str
    """Prefix of every physical name (carries the environment)."""
    ingest_function_name: pulumi.Input[str]
    ingest_invoke_arn: pulumi.Input[str]
    ingest_timeout_seconds: int
    throttle_burst_limit: int
    throttle_rate_limit: float
    log_retention_days: int
    routes: tuple[str, ...] = ROUTES
    """The route keys the API serves (`api_routes`)."""


def route_slug(route_key: str) -> str:
    """A stable logical-name fragment for a route key (`POST /segment` -> `post-segment`)."""
    method, path = route_key.split(" ", 1)
    return f"{method.lower()}-{path.strip('/').replace('/', '-')}"


def api_routes(userflow_ingress: UserflowIngress) -> tuple[str, ...]:
    """The API's routes: all of them, or all but Userflow's when its webhooks arrive through
    the ingest function's URL (one door per route, so nothing reaches it a second way)."""
    if userflow_ingress == "functionUrl":
        return tuple(route for route in ROUTES if route != USERFLOW_ROUTE)
    return ROUTES


def route_urls(
    bridge_url: pulumi.Input[str], userflow_url: pulumi.Input[str] | None = None
) -> dict[str, pulumi.Output[str]]:
    """The URL of each route, keyed by the stack export's name: under `bridge_url`, but
    Userflow's under `userflow_url` when its webhooks arrive elsewhere (both without the
    trailing slash)."""
    userflow_base = bridge_url if userflow_url is None else userflow_url
    return {
        export: pulumi.Output.concat(base, path)
        for export, base, path in (
            ("segmentRouteUrl", bridge_url, SEGMENT_ROUTE_PATH),
            ("userflowRouteUrl", userflow_base, USERFLOW_ROUTE_PATH),
            ("healthUrl", bridge_url, HEALTH_ROUTE_PATH),
        )
    }


def integration_timeout_ms(ingest_timeout_seconds: int) -> int:
    """API Gateway waits one second longer than the function may run, within its 30 s cap."""
    return min(MAX_INTEGRATION_TIMEOUT_MS, (ingest_timeout_seconds + 1) * 1000)


class BridgeApi(pulumi.ComponentResource):
    """HTTP API + `$default` stage (auto-deploy, throttled, access-logged) -> ingest."""

    api_id: pulumi.Output[str]
    stage_name: pulumi.Output[str]
    bridge_url: pulumi.Output[str]
    """The stage's invoke URL without the trailing slash; routes append `/segment` etc."""
    access_log_group_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: BridgeApiArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(component_type("BridgeApi"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        api = aws.apigatewayv2.Api(
            f"{name}-http",
            name=f"{args.name_prefix}-bridge",
            protocol_type="HTTP",
            opts=child,
        )
        integration = aws.apigatewayv2.Integration(
            f"{name}-ingest",
            api_id=api.id,
            integration_type="AWS_PROXY",
            integration_method="POST",
            integration_uri=args.ingest_invoke_arn,
            payload_format_version="2.0",
            timeout_milliseconds=integration_timeout_ms(args.ingest_timeout_seconds),
            opts=child,
        )
        routes = [
            aws.apigatewayv2.Route(
                f"{name}-{route_slug(route_key)}",
                api_id=api.id,
                route_key=route_key,
                target=pulumi.Output.concat("integrations/", integration.id),
                opts=child,
            )
            for route_key in args.routes
        ]
        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs",
            name=f"/aws/apigateway/{args.name_prefix}-bridge",
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        stage = aws.apigatewayv2.Stage(
            f"{name}-stage",
            api_id=api.id,
            name=STAGE_NAME,
            auto_deploy=True,
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_burst_limit=args.throttle_burst_limit,
                throttling_rate_limit=args.throttle_rate_limit,
                detailed_metrics_enabled=True,
            ),
            access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(
                destination_arn=access_logs.arn,
                format=ACCESS_LOG_FORMAT,
            ),
            # Deploy only once every route exists, so the first deployment is complete.
            opts=pulumi.ResourceOptions(parent=self, depends_on=routes),
        )
        aws.lambda_.Permission(
            f"{name}-invoke-ingest",
            statement_id=f"{args.name_prefix}-api-invoke",
            action="lambda:InvokeFunction",
            function=args.ingest_function_name,
            principal="apigateway.amazonaws.com",
            # This API's stage only: <execution arn>/<stage>/<method>/<path>.
            source_arn=pulumi.Output.concat(api.execution_arn, "/", stage.name, "/*/*"),
            opts=child,
        )

        self.api_id = api.id
        self.stage_name = stage.name
        self.bridge_url = stage.invoke_url.apply(lambda url: url.rstrip("/"))
        self.access_log_group_name = access_logs.name
        self.register_outputs(
            {
                "api_id": self.api_id,
                "bridge_url": self.bridge_url,
                "access_log_group_name": self.access_log_group_name,
            }
        )
