"""What `python -m ops verify` checks: a stack's bridge URL, API URLs and secrets, read from its
outputs, config and state (locally) or Secrets Manager (on AWS). Finding them is verify's first
check, so a missing piece is a `CheckFailed` that says where to look; no secret is printed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from components.segment_api import API_URL_KEY as SEGMENT_API_URL_KEY
from components.segment_api import DEFAULT_API_URL as SEGMENT_DEFAULT_API_URL
from components.segment_api import TOKEN_KEY as SEGMENT_TOKEN_KEY
from components.userflow_api import API_KEY_KEY, API_URL_KEY, DEFAULT_API_URL
from ops.engine import CONFIG_NAMESPACE, resource_outputs

SESSION_FILE = "sandbox-session-{stack}.json"


class CheckFailed(Exception):
    """A check did not pass: what was seen, and where to look."""

    def __init__(self, detail: str, hint: str) -> None:
        super().__init__(detail)
        self.detail, self.hint = detail, hint



@dataclass
class Target:
    """Where the stack's parts are and the secrets to talk to them (never printed)."""

    stack: str
    hosting: str
    bridge_url: str
    userflow_api_url: str
    userflow_api_key: str = field(repr=False)
    shared_secret: str = field(repr=False)
    userflow_webhook_secret: str = field(repr=False)
    userflow_source_id: str | None = None
    segment_url: str | None = None
    segment_token: str | None = field(default=None, repr=False)
    app_source_id: str | None = None
    destination_id: str | None = None
    # Where the write key the bridge sends to Segment comes from (named, never shown).
    write_key_origin: str = "the bridge's Segment write key"
    queue_urls: dict[str, str] = field(default_factory=dict)
    region: str | None = None
    # Where Userflow's webhooks go when not to bridge_url + /userflow (the stack's
    # userflowRouteUrl: the ingest function's URL with userflowIngress=functionUrl).
    userflow_route_url: str | None = None

    @property
    def userflow_url(self) -> str:
        """The URL verify posts its signed webhook to: where Userflow delivers."""
        return self.userflow_route_url or f"{self.bridge_url}/userflow"


def session_path(state_dir: Path, stack: str) -> Path:
    """Where a running demo (`--keep`) notes its URLs (no secrets) for verify to find."""
    return state_dir / SESSION_FILE.format(stack=stack)


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value not in (None, ""):
            return value
    return None


class StackReader(Protocol):
    """What verify reads from a stack (the engine; tests may hand in a stand-in)."""

    def outputs(self, stack: str, *, show_secrets: bool = False) -> dict[str, Any]: ...

    def config(self, stack: str, config_file: Path | None = None, *,
               show_secrets: bool = False) -> dict[str, Any]: ...

    def export(self, stack: str, *, show_secrets: bool = False) -> dict[str, Any]: ...


def local_target(engine: StackReader, stack: str, overrides: Mapping[str, str | None],
                 state_dir: Path) -> Target:
    session: dict[str, Any] = {}
    path = session_path(state_dir, stack)
    if path.exists():
        session = json.loads(path.read_text(encoding="utf-8"))
    outputs = engine.outputs(stack)
    config = engine.config(stack, show_secrets=True)
    deployment = engine.export(stack, show_secrets=True)

    def pick(name: str, *output_keys: str) -> str | None:
        found = overrides.get(name) or session.get(name) or _first(outputs, *output_keys)
        if found is None:
            found = config.get(f"{CONFIG_NAMESPACE}:{name}")
        return str(found) if found else None

    bridge_url = pick("bridgeUrl", "bridgeUrl")
    userflow_api_url = pick("userflowApiUrl")
    segment_url = pick("segmentApiUrl")
    destinations = resource_outputs(deployment, "segment:WebhookDestination")
    subscriptions = resource_outputs(deployment, "userflow:WebhookSubscription")
    sources = {str(o.get("slug")): o for o in resource_outputs(deployment, "segment:Source")}
    environment = str(config.get(f"{CONFIG_NAMESPACE}:environment") or stack)
    userflow_source = sources.get(f"userflow-{environment}") or {}
    api_key = config.get(API_KEY_KEY)
    if not destinations or not subscriptions:
        raise CheckFailed(
            "the stack's state has no Segment destination or Userflow webhook subscription",
            f"deploy it first (`python -m sandbox demo --keep` or `pulumi up --stack {stack}`)",
        )
    if not bridge_url or not userflow_api_url or not api_key or bridge_url.endswith(":0"):
        raise CheckFailed(
            "the bridge or Userflow URL is unknown (the stack file holds placeholders)",
            "run `python -m sandbox demo --keep` in another terminal, or pass --bridge-url "
            "and --userflow-api-url",
        )
    userflow_source_id = _first(outputs, "userflowSourceId") or userflow_source.get("source_id")
    token = config.get(SEGMENT_TOKEN_KEY)
    return Target(
        stack=stack,
        hosting="local",
        bridge_url=bridge_url.rstrip("/"),
        userflow_api_url=userflow_api_url.rstrip("/"),
        userflow_api_key=str(api_key),
        shared_secret=str(destinations[0]["shared_secret"]),
        userflow_webhook_secret=str(subscriptions[0]["secret"]),
        userflow_source_id=str(userflow_source_id) if userflow_source_id else None,
        segment_url=segment_url.rstrip("/") if segment_url else None,
        segment_token=str(token) if token else None,
        app_source_id=_optional(_first(outputs, "appSourceId")
                                or destinations[0].get("source_id")),
        destination_id=_optional(_first(outputs, "destinationId")
                                 or destinations[0].get("destination_id")),
        write_key_origin=(
            "the local bridge's SEGMENT_WRITE_KEY: it must be the write key of the Userflow "
            f"source userflow-{environment} (the `write_key` output of that segment:Source in "
            f"the stack's state; `python -m sandbox demo` hands it over)"),
    )


def aws_target(engine: StackReader, stack: str, overrides: Mapping[str, str | None]) -> Target:
    """A deployed stack: URLs and secret ARNs from its outputs, values from Secrets Manager."""
    import boto3  # type: ignore[import-untyped]

    outputs = engine.outputs(stack)
    config = engine.config(stack, show_secrets=True)
    bridge_url = overrides.get("bridgeUrl") or _first(outputs, "bridgeUrl")
    if not bridge_url:
        raise CheckFailed("the stack exports no bridge URL",
                          f"`pulumi stack output --stack {stack}`: is the stack deployed?")
    region = config.get("aws:region")
    client = boto3.client("secretsmanager", region_name=str(region) if region else None)

    def secret(*keys: str) -> str:
        arn = _first(outputs, *keys)
        if not arn:
            raise CheckFailed(f"the stack exports none of {', '.join(keys)}",
                              "the bridge's secrets must be exported as ARNs")
        value = client.get_secret_value(SecretId=str(arn))["SecretString"]
        return str(value).split(",")[0]

    api_key = config.get(API_KEY_KEY)
    token = config.get(SEGMENT_TOKEN_KEY)
    write_key_arn = _first(outputs, "segmentWriteKeySecretArn")
    return Target(
        stack=stack,
        hosting="aws",
        bridge_url=str(bridge_url).rstrip("/"),
        userflow_api_url=str(overrides.get("userflowApiUrl") or config.get(
            API_URL_KEY) or DEFAULT_API_URL).rstrip("/"),
        userflow_api_key=str(api_key),
        shared_secret=secret("segmentSharedSecretArn"),
        userflow_webhook_secret=secret("userflowWebhookSecretArn"),
        queue_urls={k: str(outputs[k]) for k in ("queueUrl", "deadLetterQueueUrl")
                    if outputs.get(k)},
        region=str(region) if region else None,
        userflow_route_url=_separate_userflow_route(outputs),
        userflow_source_id=_optional(_first(outputs, "userflowSourceId")),
        segment_url=str(overrides.get("segmentApiUrl") or config.get(SEGMENT_API_URL_KEY)
                        or SEGMENT_DEFAULT_API_URL).rstrip("/"),
        segment_token=str(token) if token else None,
        app_source_id=_optional(_first(outputs, "appSourceId")),
        destination_id=_optional(_first(outputs, "destinationId")),
        write_key_origin=(
            f"the Segment write key secret the bridge reads (output segmentWriteKeySecretArn: "
            f"{write_key_arn or 'not exported'}): it must be a write key of the Userflow source "
            f"{_first(outputs, 'userflowSourceSlug') or ''} (rotated? `pulumi up --stack "
            f"{stack}` writes the current one)"),
    )


def _separate_userflow_route(outputs: Mapping[str, Any]) -> str | None:
    """The stack's userflowRouteUrl when it is not under its bridgeUrl (Userflow's webhooks
    arrive through the ingest function's URL); None: bridge_url + /userflow, as before, so a
    --bridge-url override still applies to it."""
    route, bridge_url = _first(outputs, "userflowRouteUrl"), _first(outputs, "bridgeUrl")
    if not route or not bridge_url or str(route).startswith(str(bridge_url).rstrip("/") + "/"):
        return None
    return str(route)


def _optional(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
