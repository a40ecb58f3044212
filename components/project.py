"""The project's name, as Pulumi.yaml declares it: the config namespace and type-token prefix."""

PROJECT = "userflow-segment"
SEGMENT_ROUTE_PATH = "/segment"
USERFLOW_ROUTE_PATH = "/userflow"


def component_type(name: str) -> str:
    """The type token of one of this project's component resources."""
    return f"{PROJECT}:index:{name}"
