"""What the Userflow emulator stores and the rules its REST API follows, free of the server:
the sandbox credentials, error bodies, ids, attribute bodies, list pages and the upsert of
users and groups.

Wire rules, from Userflow's API reference (https://userflow.com/docs/api) and the public
clients that call it:
`Authorization: Bearer ak_…`, `Userflow-Version: 2020-01-03` on every call (400 otherwise),
JSON in and out, errors `{"error": {"code", "message"}}`, lists `{"object": "list", "data",
"has_more", "next_page_url"}` with `limit` (1..100, default 10) and `starting_after`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sandbox.userflow.attributes import InvalidAttribute, merge_attributes, validate_attributes
from sandbox.wire import ApiError, BadJson, HttpRequest, JsonObject, clip, json_response, parse_json

if TYPE_CHECKING:
    from sandbox.userflow.server import UserflowEmulator

# Sandbox-only credential, published in docs/ARCHITECTURE.md.
SANDBOX_API_KEY = "ak_sandbox_local"
API_VERSION = "2020-01-03"
LIST_LIMIT_DEFAULT = 10
LIST_LIMIT_MAX = 100

HandlerResult = tuple[int, Any]
RestHandler = Callable[["UserflowEmulator", HttpRequest, dict[str, str], Any], HandlerResult]


def change(topic: str, obj: JsonObject) -> JsonObject:
    """A change to notify about, with the object as it is now (later writes don't leak in)."""
    snapshot: JsonObject = json.loads(json.dumps(obj))
    return {"topic": topic, "object": snapshot}


def error(status: int, code: str, message: str) -> ApiError:
    return ApiError(json_response(status, {"error": {"code": code, "message": message}}))


def object_id(value: Any, field: str) -> str:
    """Ids are strings; numbers are accepted and stringified (as JSON clients often send)."""
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        raise error(400, "invalid_request", f"{field} must be a non-empty string")
    return str(value)


def existing(objects: Mapping[str, JsonObject], what: str, ident: str) -> JsonObject:
    """The stored object, or the API's 404 naming what was looked for."""
    found = objects.get(ident)
    if found is None:
        raise error(404, "not_found", f"{what} {clip(ident)!r} not found")
    return found


def json_body(request: HttpRequest) -> JsonObject:
    try:
        body = parse_json(request.body or b"{}")
    except BadJson as exc:
        raise error(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise error(400, "invalid_request", "request body must be a JSON object")
    return body


def validated_attributes(body: Mapping[str, Any]) -> Any:
    attributes = body.get("attributes")
    try:
        validate_attributes(attributes)
    except InvalidAttribute as exc:
        raise error(400, "invalid_attribute", str(exc)) from exc
    return attributes


def list_page(request: HttpRequest, items: list[JsonObject], path: str) -> tuple[int, JsonObject]:
    raw_limit = request.query_value("limit")
    try:
        limit = int(raw_limit) if raw_limit is not None else LIST_LIMIT_DEFAULT
    except ValueError as exc:
        raise error(400, "invalid_request", "limit must be an integer") from exc
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise error(400, "invalid_request", f"limit must be between 1 and {LIST_LIMIT_MAX}")
    after = request.query_value("starting_after")
    start = 0
    if after:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise error(400, "invalid_request", f"starting_after {after!r} is not in the list")
        start = ids.index(after) + 1
    page = items[start : start + limit]
    has_more = start + limit < len(items)
    next_url = (
        f"{path}?limit={limit}&starting_after={quote(page[-1]['id'], safe='')}"
        if has_more and page
        else None
    )
    return 200, {
        "object": "list",
        "data": page,
        "has_more": has_more,
        "next_page_url": next_url,
    }


def upsert_record(
    records: dict[str, JsonObject],
    object_type: str,
    record_id: str,
    attributes: Any,
    now: str,
    changed_besides: bool = False,
) -> JsonObject | None:
    """Create or merge a user or group; the change to notify about, None if unchanged.

    `changed_besides`: something outside the attributes changed (a user's memberships).
    """
    existing = records.get(record_id)
    if existing is None:
        record = {
            "id": record_id,
            "object": object_type,
            "attributes": merge_attributes({}, attributes),
            "created_at": now,
            "updated_at": now,
        }
        records[record_id] = record
        return change(f"{object_type}.created", record)
    merged = merge_attributes(existing["attributes"], attributes)
    if merged == existing["attributes"] and not changed_besides:
        return None
    existing.update(attributes=merged, updated_at=now)
    return change(f"{object_type}.updated", existing)
