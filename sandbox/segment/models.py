"""What the Segment emulator stores and the rules objects obey, free of HTTP: the sandbox
credentials, the error bodies of the Public API, how stored objects are rendered, and the
checks a create or update must pass."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbox.segment.catalog import (
    BATCH_SIZE_RANGE,
    DEFAULT_DATA_MAPPING,
    DESTINATION_METADATA,
    SECRET_DESTINATION_SETTINGS,
    SEND_METHODS,
    SOURCE_METADATA,
    WEBHOOKS_SEND_ACTION_ID,
    mask_secret,
)
from sandbox.segment.fql import FqlError, parse_trigger
from sandbox.wire import ApiError, HttpRequest, HttpResponse, JsonObject, clip, json_response

if TYPE_CHECKING:
    from sandbox.segment.server import SegmentEmulator

# Sandbox-only credentials, published in docs/ARCHITECTURE.md.
ADMIN_TOKEN = "sandbox-segment-token"  # noqa: S105
NOADMIN_TOKEN = "sandbox-segment-token-noadmin"  # noqa: S105
WORKSPACE_ID = "ws_sandbox"

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


# -- error bodies ---------------------------------------------------------------------------------


def error_envelope(
    status: int, kind: str, message: str, field: str | None = None, data: Any = None
) -> HttpResponse:
    error: JsonObject = {"type": kind, "message": message}
    if field is not None:
        error["field"] = field
    if data is not None:
        error["data"] = data
    return json_response(status, {"errors": [error]})


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(error_envelope(404, "NotFound", f"{what} {clip(ident)!r} not found"))


def validation_failure(message: str, field: str | None = None) -> ApiError:
    return ApiError(error_envelope(422, "ValidationFailure", message, field))


def rate_limited(wait_ms: int) -> HttpResponse:
    return error_envelope(429, "RateLimited", "Rate limit exceeded", data={"msBeforeNext": wait_ms})


# -- one Public API call, as a handler sees it ----------------------------------------------------


@dataclass(frozen=True)
class Caller:
    token: str
    source_admin: bool


@dataclass(frozen=True)
class PublicCall:
    """One authenticated, spec-checked Public API call, as its handler sees it."""

    emu: SegmentEmulator
    request: HttpRequest
    caller: Caller
    params: dict[str, str]
    body: Any


HandlerResult = tuple[int, Any]


@dataclass(frozen=True)
class Operation:
    run: Callable[[PublicCall], HandlerResult]
    in_spec: bool = True  # False: alpha endpoints outside the v36 spec, validated by hand
    report: bool = False  # True: a report endpoint, with its own per-minute rate limit


# -- rendering ------------------------------------------------------------------------------------


def render_source(source: JsonObject, caller: Caller) -> JsonObject:
    return {
        "id": source["id"],
        "slug": source["slug"],
        "name": source["name"],
        "metadata": SOURCE_METADATA[source["metadataId"]],
        "workspaceId": WORKSPACE_ID,
        "enabled": source["enabled"],
        # Without the source-admin permission the real API hides write keys.
        "writeKeys": list(source["writeKeys"]) if caller.source_admin else [],
        "settings": dict(source["settings"]),
        "labels": list(source["labels"]),
    }


def render_destination(destination: JsonObject) -> JsonObject:
    secrets = SECRET_DESTINATION_SETTINGS.get(destination["metadataId"], frozenset())
    settings = {
        key: mask_secret(value) if key in secrets else value
        for key, value in destination["settings"].items()
    }
    return {
        "id": destination["id"],
        "name": destination["name"],
        "enabled": destination["enabled"],
        "metadata": DESTINATION_METADATA[destination["metadataId"]],
        "sourceId": destination["sourceId"],
        "settings": settings,
    }


def render_subscription(subscription: JsonObject) -> JsonObject:
    rendered: JsonObject = json.loads(json.dumps(subscription))
    return rendered


# -- rules --------------------------------------------------------------------------------------


def merge_settings(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Settings PATCH semantics: given keys replace, `null` removes, absent keys stay."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def check_slug(sources: Mapping[str, JsonObject], slug: str, except_id: str | None = None) -> None:
    if not SLUG_PATTERN.match(slug):
        raise validation_failure(
            f"slug {slug!r} must be lowercase letters, digits, '-' or '_'", "slug"
        )
    for source in sources.values():
        if source["slug"] == slug and source["id"] != except_id:
            raise validation_failure(f"a source with slug {slug!r} already exists", "slug")


def check_destination_settings(metadata_id: str, settings: Mapping[str, Any]) -> None:
    known = {option["name"] for option in DESTINATION_METADATA[metadata_id]["options"]}
    for key, value in settings.items():
        if key not in known:
            raise validation_failure(
                f"unknown setting {key!r}; this destination takes {sorted(known)}",
                f"settings.{key}",
            )
        if value is not None and not isinstance(value, str):
            raise validation_failure(f"setting {key!r} must be a string", f"settings.{key}")


def check_subscription(action_id: str, trigger: str, settings: Mapping[str, Any]) -> None:
    if action_id != WEBHOOKS_SEND_ACTION_ID:
        raise validation_failure(
            f"action {action_id!r} is not an action of this destination", "actionId"
        )
    try:
        parse_trigger(trigger)
    except FqlError as exc:
        raise validation_failure(f"invalid trigger: {exc}", "trigger") from exc
    url = settings.get("url")
    if not isinstance(url, str) or not re.match(r"^https?://", url):
        raise validation_failure("settings.url must be an http(s) URL", "settings.url")
    if settings.get("method") not in SEND_METHODS:
        raise validation_failure(
            f"settings.method must be one of {list(SEND_METHODS)}", "settings.method"
        )
    headers = settings.get("headers")
    if headers is not None and (
        not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values())
    ):
        raise validation_failure("settings.headers must map names to strings", "settings.headers")
    data = settings.get("data")
    if data is not None and data != DEFAULT_DATA_MAPPING:
        raise validation_failure(
            'the emulator supports only the default data mapping {"@path": "$."}',
            "settings.data",
        )
    batching = settings.get("enable_batching")
    if batching is not None and not isinstance(batching, bool):
        raise validation_failure("settings.enable_batching must be a boolean")
    size = settings.get("batch_size")
    if size is not None and (
        isinstance(size, bool)
        or not isinstance(size, int | float)
        or not BATCH_SIZE_RANGE[0] <= size <= BATCH_SIZE_RANGE[1]
    ):
        raise validation_failure(
            f"settings.batch_size must be between {BATCH_SIZE_RANGE[0]} and {BATCH_SIZE_RANGE[1]}",
            "settings.batch_size",
        )
