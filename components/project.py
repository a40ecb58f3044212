"""The project's name, as Pulumi.yaml declares it: the config namespace and type-token prefix;
the bridge's public paths and the front doors Userflow's webhooks may arrive through."""

from typing import Literal

PROJECT = "userflow-segment"
SEGMENT_ROUTE_PATH = "/segment"
USERFLOW_ROUTE_PATH = "/userflow"
# Where Userflow's webhooks arrive on AWS (config key userflowIngress): the API Gateway HTTP
# API that Segment's deliveries use too, or the ingest function's own URL (no per-request
# charge, no API throttle, access log or custom domain).
UserflowIngress = Literal["apiGateway", "functionUrl"]
USERFLOW_INGRESSES: tuple[UserflowIngress, ...] = ("apiGateway", "functionUrl")


def component_type(name: str) -> str:
    """The type token of one of this project's component resources."""
    return f"{PROJECT}:index:{name}"
