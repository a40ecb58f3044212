"""The Segment emulator: Public API, Tracking API and Webhooks (Actions) delivery on one port.

`python -m sandbox segment --port P` prints `READY segment http://127.0.0.1:P` once listening.

- Public API (`/sources`, `/destinations`, subscriptions, write keys, catalog): every request is
  validated against the official OpenAPI spec (400 naming the violation) and so is every
  response (a violation is an emulator bug: 500, and `spec_violations` in the state).
- Tracking API (`/v1/identify|track|page|screen|group|alias|batch`): Basic auth or `writeKey` in
  the body; 400 only for invalid JSON or oversize payloads; everything else answers 200 and
  events that cannot be accepted (unknown write key, no userId/anonymousId, track without
  event, disabled source, a messageId of 100+ characters) are dropped, as the real collector
  does, and listed in `dropped`. A repeated messageId within a source is dropped as a duplicate.
- Delivery: each accepted event goes, on background threads, to every enabled Send
  subscription (FQL trigger matching) of every enabled Webhooks (Actions) destination of its
  source, signed with `X-Signature`, batched if asked, retried on 5xx/408/423/429/timeouts.

Inspection (`/__sandbox__/`, docs/ARCHITECTURE.md): `state` holds `sources` (with their write
keys), `destinations` (settings in clear: deliveries are signed with them), `subscriptions`,
`events` (source id → events as delivered, each with `receivedAt`), `dropped` (reason per
event), `deduplicated`, `spec_violations`, `deliveries` (one entry per attempt: status,
attempt, latency_ms, error, destination/subscription ids, message ids), `deliveries_pending`
and `faults`; `requests?kind=public|tracking` is the request log. In process,
`emulator.state()`, `emulator.request_log(kind)` and `emulator.deliveries.wait_idle(timeout)`
give the same without HTTP.

Options (keyword arguments, or the command's flags): `seed` (ids and keys; default 0),
`tokens` (extra Public API tokens → has source admin), `batch_window_s` (0.5),
`rate_limit_per_s` (1000 per token), `delivery_attempts` (5), `delivery_backoff_s` (0.2, doubled
per retry), `delivery_timeout_s` (10), `spec_path`.

Choices where the real API is silent (documented for the clients built against this):
- `X-RateLimit-Reset` is the epoch milliseconds at which the current window ends; a 429 carries
  `data.msBeforeNext` and `Retry-After` (seconds).
- One emulator is one workspace (`ws_sandbox`): every accepted token sees the same objects.
- Subscription `settings` PATCH merges like destination settings (`null` removes a key).
- Deleting a source deletes its destinations and their subscriptions.
- A destination is created disabled unless `enabled` is given.
- The Send action's `data` mapping supports only the default `{"@path": "$."}` (the whole
  event); any other mapping is refused with 422.
- Write key endpoints (alpha, not in the v36 spec) are validated by hand; they need the
  source-admin token (403 otherwise). `POST /sources/{id}/writekey` answers
  `{"data": {"writeKey", "source"}}`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import gzip
import hashlib
import hmac
import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.emu_fql import FqlError, Node, parse_trigger
from sandbox.emu_http import (
    JSON_TYPE,
    ApiError,
    Emulator,
    Fault,
    HttpRequest,
    HttpResponse,
    IdFactory,
    JsonObject,
    OutboundRequest,
    compact_json,
    json_response,
    utc_now_iso,
)
from sandbox.emu_segment_catalog import (
    BATCH_SIZE_RANGE,
    DEFAULT_DATA_MAPPING,
    DESTINATION_METADATA,
    SECRET_DESTINATION_SETTINGS,
    SEND_METHODS,
    SOURCE_METADATA,
    WEBHOOKS_ACTIONS_DESTINATION_ID,
    WEBHOOKS_SEND_ACTION_ID,
    WEBHOOKS_SEND_ACTION_SLUG,
    mask_secret,
)
from sandbox.emu_segment_spec import SegmentSpec, load_spec

# Sandbox-only credentials, published in docs/ARCHITECTURE.md.
ADMIN_TOKEN = "sandbox-segment-token"  # noqa: S105
NOADMIN_TOKEN = "sandbox-segment-token-noadmin"  # noqa: S105
WORKSPACE_ID = "ws_sandbox"

TRACKING_TYPES = ("identify", "track", "page", "screen", "group", "alias")
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
MAX_MESSAGE_ID_CHARS = 100
PAGE_COUNT_RANGE = (1, 200)
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
DELIVERY_USER_AGENT = "Segment (Actions)"


def _retryable_delivery(status: int | None) -> bool:
    """Segment retries timeouts, 5xx except 501, 408, 423 and 429; other 4xx are final."""
    if status is None:
        return True
    return status in {408, 423, 429} or (status >= 500 and status != 501)


@functools.lru_cache(maxsize=256)
def _compiled_trigger(trigger: str) -> Node:
    """Triggers were validated when saved; parse each once, not once per event."""
    return parse_trigger(trigger)


def segment_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha1).hexdigest()


def merge_settings(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Settings PATCH semantics: given keys replace, `null` removes, absent keys stay."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


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
    return ApiError(error_envelope(404, "NotFound", f"{what} {ident!r} not found"))


def validation_failure(message: str, field: str | None = None) -> ApiError:
    return ApiError(error_envelope(422, "ValidationFailure", message, field))


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        prefix, _, number = text.partition(":")
        if prefix != "offset":
            raise ValueError(cursor)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise validation_failure(f"invalid cursor {cursor!r}", "pagination.cursor") from exc


def paginate(
    items: list[JsonObject], query: Mapping[str, str]
) -> tuple[list[JsonObject], JsonObject]:
    raw_count = query.get("pagination[count]")
    try:
        count = int(float(raw_count)) if raw_count is not None else 0
    except ValueError as exc:
        raise validation_failure("pagination.count must be a number", "pagination.count") from exc
    if not PAGE_COUNT_RANGE[0] <= count <= PAGE_COUNT_RANGE[1]:
        raise validation_failure(
            f"pagination.count must be between {PAGE_COUNT_RANGE[0]} and {PAGE_COUNT_RANGE[1]}",
            "pagination.count",
        )
    cursor = query.get("pagination[cursor]")
    offset = _decode_cursor(cursor) if cursor else 0
    if offset < 0 or (offset and offset >= len(items)):
        raise validation_failure(f"cursor {cursor!r} is past the end", "pagination.cursor")
    page = items[offset : offset + count]
    pagination: JsonObject = {
        "current": _encode_cursor(offset),
        "next": _encode_cursor(offset + count) if offset + count < len(items) else None,
        "previous": _encode_cursor(max(offset - count, 0)) if offset > 0 else None,
        "totalEntries": len(items),
    }
    return page, pagination


@dataclass(frozen=True)
class Caller:
    token: str
    source_admin: bool


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[[SegmentEmulator, HttpRequest, Caller, dict[str, str], Any], tuple[int, Any]]
    spec_path: str | None  # the spec's path template, or None for endpoints outside the spec


def _route(method: str, template: str, spec: bool = True) -> Callable[[Any], Any]:
    pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")

    def register(function: Any) -> Any:
        _ROUTES.append(Route(method, pattern, function, template if spec else None))
        return function

    return register


_ROUTES: list[Route] = []


class _Batcher:
    """Collects events per batching subscription; flushes on size or after a short window."""

    def __init__(self, window_s: float, flush: Callable[[str, list[JsonObject]], None]) -> None:
        self.window_s = window_s
        self._flush = flush
        self._lock = threading.Lock()
        self._buffers: dict[str, list[JsonObject]] = {}
        self._timers: dict[str, threading.Timer] = {}

    def add(self, key: str, item: JsonObject, batch_size: int) -> None:
        ready: list[JsonObject] | None = None
        with self._lock:
            buffer = self._buffers.setdefault(key, [])
            buffer.append(item)
            if len(buffer) >= batch_size:
                ready = self._take(key)
            elif len(buffer) == 1:
                timer = threading.Timer(self.window_s, self._on_timer, args=(key,))
                timer.daemon = True
                self._timers[key] = timer
                timer.start()
        if ready:
            self._flush(key, ready)

    def _take(self, key: str) -> list[JsonObject]:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        return self._buffers.pop(key, [])

    def _on_timer(self, key: str) -> None:
        with self._lock:
            ready = self._take(key)
        if ready:
            self._flush(key, ready)

    def clear(self) -> None:
        with self._lock:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            self._buffers.clear()


class SegmentEmulator(Emulator):
    name = "segment"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int | None = 0,
        tokens: Mapping[str, bool] | None = None,
        batch_window_s: float = 0.5,
        rate_limit_per_s: int = 1000,
        spec_path: str | None = None,
        delivery_attempts: int = 5,
        delivery_backoff_s: float = 0.2,
        delivery_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(
            host,
            port,
            seed=seed,
            delivery_attempts=delivery_attempts,
            delivery_backoff_s=delivery_backoff_s,
            delivery_timeout_s=delivery_timeout_s,
        )
        # Loaded (once per process) before the server listens: READY means validation is ready.
        self.spec: SegmentSpec = load_spec(spec_path)
        self.tokens: dict[str, bool] = {ADMIN_TOKEN: True, NOADMIN_TOKEN: False}
        self.tokens.update(tokens or {})
        self.rate_limit_per_s = rate_limit_per_s
        self._window: dict[str, tuple[float, int]] = {}
        self._batcher = _Batcher(batch_window_s, self._flush_batch)
        # Own streams for messageIds and delivery ids: background batching must not shift the
        # ids a seeded run gives to sources, destinations and subscriptions.
        self.event_ids = IdFactory(None if seed is None else seed + 1)
        self.delivery_ids = IdFactory(None if seed is None else seed + 2)
        self.reset_state()

    # -- state ---------------------------------------------------------------------------------

    def reset_state(self) -> None:
        with self.lock:
            self.sources: dict[str, JsonObject] = {}
            self.destinations: dict[str, JsonObject] = {}
            self.subscriptions: dict[str, JsonObject] = {}
            self.events: dict[str, list[JsonObject]] = {}
            self.message_ids: dict[str, set[str]] = {}
            self.dropped: list[JsonObject] = []
            self.deduplicated = 0
            self.spec_violations: list[JsonObject] = []
            self._window.clear()
            self.event_ids.reset()
            self.delivery_ids.reset()
        self._batcher.clear()

    def stored_state(self) -> JsonObject:
        with self.lock:
            snapshot: JsonObject = json.loads(
                json.dumps(
                    {
                        "workspaceId": WORKSPACE_ID,
                        "sources": list(self.sources.values()),
                        "destinations": list(self.destinations.values()),
                        "subscriptions": list(self.subscriptions.values()),
                        "events": self.events,
                        "dropped": self.dropped,
                        "deduplicated": self.deduplicated,
                        "spec_violations": self.spec_violations,
                    }
                )
            )
        return snapshot

    def stop(self) -> None:
        self._batcher.clear()
        super().stop()

    # -- shared emulator hooks -----------------------------------------------------------------

    def request_kind(self, request: HttpRequest) -> str:
        return "tracking" if request.path.startswith("/v1/") else "public"

    def fault_response(self, fault: Fault, request: HttpRequest) -> HttpResponse:
        status = fault.status or 500
        if request.path.startswith("/v1/"):
            response = json_response(status, {"success": False, "message": "injected fault"})
        elif status == 404:
            response = error_envelope(404, "NotFound", "Resource not found")
        elif status == 422:
            response = error_envelope(422, "ValidationFailure", "Validation failure")
        elif status == 429:
            wait_s = fault.retry_after if fault.retry_after is not None else 0.1
            response = error_envelope(
                429, "RateLimited", "Rate limit exceeded", data={"msBeforeNext": int(wait_s * 1000)}
            )
        else:
            response = error_envelope(status, "InternalServerError", "injected fault")
        if fault.retry_after is not None:
            response.headers["Retry-After"] = str(max(1, math.ceil(fault.retry_after)))
        return response

    def handle_api(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/v1/"):
            return self._handle_tracking(request)
        return self._handle_public(request)

    # -- Public API pipeline -------------------------------------------------------------------

    def _match(self, request: HttpRequest) -> tuple[Route, dict[str, str]]:
        path_known = False
        for route in _ROUTES:
            match = route.pattern.match(request.path)
            if match is None:
                continue
            path_known = True
            if route.method == request.method:
                return route, match.groupdict()
        if path_known:
            raise ApiError(
                error_envelope(405, "MethodNotAllowed", f"{request.method} {request.path}")
            )
        raise ApiError(error_envelope(404, "NotFound", f"no such endpoint {request.path}"))

    def _authenticate(self, request: HttpRequest) -> Caller:
        scheme, _, token = request.header("Authorization").partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in self.tokens:
            raise ApiError(error_envelope(401, "Unauthorized", "missing or invalid Bearer token"))
        return Caller(token.strip(), self.tokens[token.strip()])

    def _rate_limit(self, caller: Caller) -> dict[str, str]:
        now = time.time()
        with self.lock:
            started, used = self._window.get(caller.token, (now, 0))
            if now - started >= 1.0:
                started, used = now, 0
            used += 1
            self._window[caller.token] = (started, used)
        reset_ms = int((started + 1.0) * 1000)
        if used > self.rate_limit_per_s:
            wait_ms = max(1, reset_ms - int(now * 1000))
            response = error_envelope(
                429, "RateLimited", "Rate limit exceeded", data={"msBeforeNext": wait_ms}
            )
            response.headers["Retry-After"] = str(max(1, math.ceil(wait_ms / 1000)))
            raise ApiError(response)
        return {
            "X-RateLimit-Consumed": "1",
            "X-RateLimit-Remaining": str(self.rate_limit_per_s - used),
            "X-RateLimit-Reset": str(reset_ms),
        }

    def _validated_body(self, request: HttpRequest, route: Route) -> tuple[Any, str]:
        """Spec-check the request; answer 400 naming every violation. Returns (body, media)."""
        content_type = request.content_type
        if route.spec_path is None:
            media = content_type or JSON_TYPE
        else:
            accepted = self.spec.request_media_types(route.spec_path, request.method)
            media = content_type
            # The official SDKs send plain JSON and the API accepts it as the default version.
            if accepted and content_type in {"application/json", ""}:
                media = accepted[0]
            if accepted and request.body and media not in accepted:
                raise ApiError(
                    error_envelope(
                        400,
                        "BadRequest",
                        f"unsupported Content-Type {content_type!r}; expected one of {accepted}",
                    )
                )
            headers = {k: str(v) for k, v in request.headers.items()}
            violations = self.spec.request_violations(
                request.method, request.path, request.query, headers, request.body, media
            )
            if violations:
                raise ApiError(
                    error_envelope(
                        400,
                        "BadRequest",
                        "request violates the Segment Public API spec: " + "; ".join(violations),
                    )
                )
        if not request.body:
            return None, media
        try:
            return json.loads(request.body), media
        except ValueError as exc:
            raise ApiError(error_envelope(400, "BadRequest", f"invalid JSON: {exc}")) from exc

    def _response_media(self, request: HttpRequest, route: Route, status: int) -> str:
        if route.spec_path is None:
            return JSON_TYPE
        offered = self.spec.response_media_types(route.spec_path, request.method, status)
        accept = [part.split(";")[0].strip() for part in request.header("Accept").split(",")]
        for media in accept:
            if media in offered:
                return media
        return offered[0] if offered else JSON_TYPE

    def _check_response(
        self, request: HttpRequest, route: Route, media: str, response: HttpResponse
    ) -> HttpResponse:
        if route.spec_path is None or not self.spec.declares_status(
            route.spec_path, request.method, response.status
        ):
            return response
        headers = {k: str(v) for k, v in request.headers.items()}
        violations = self.spec.response_violations(
            request.method,
            request.path,
            request.query,
            headers,
            request.body,
            media,
            response.status,
            response.body,
            response.content_type,
        )
        if not violations:
            return response
        with self.lock:
            self.spec_violations.append(
                {"method": request.method, "path": request.path, "violations": violations}
            )
        return json_response(
            500, {"error": "emulator response violates the spec", "violations": violations}
        )

    def _handle_public(self, request: HttpRequest) -> HttpResponse:
        route, params = self._match(request)
        media = request.content_type or JSON_TYPE
        try:
            caller = self._authenticate(request)
            rate_headers = self._rate_limit(caller)
            body, media = self._validated_body(request, route)
            status, data = route.handler(self, request, caller, params, body)
            response = json_response(
                status, {"data": data}, self._response_media(request, route, status)
            )
            response.headers.update(rate_headers)
        except ApiError as exc:
            response = exc.response
        # Every answer the spec declares (200, 404, 422, 429) is checked, errors included.
        return self._check_response(request, route, media, response)

    # -- rendering -----------------------------------------------------------------------------

    def _render_source(self, source: JsonObject, caller: Caller) -> JsonObject:
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

    def _render_destination(self, destination: JsonObject) -> JsonObject:
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

    @staticmethod
    def _render_subscription(subscription: JsonObject) -> JsonObject:
        rendered: JsonObject = json.loads(json.dumps(subscription))
        return rendered

    # -- lookups -------------------------------------------------------------------------------

    def _source(self, source_id: str) -> JsonObject:
        source = self.sources.get(source_id)
        if source is None:
            raise not_found("source", source_id)
        return source

    def _destination(self, destination_id: str) -> JsonObject:
        destination = self.destinations.get(destination_id)
        if destination is None:
            raise not_found("destination", destination_id)
        return destination

    def _subscription(self, destination_id: str, subscription_id: str) -> JsonObject:
        self._destination(destination_id)
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None or subscription["destinationId"] != destination_id:
            raise not_found("subscription", subscription_id)
        return subscription

    def _check_slug(self, slug: str, except_id: str | None = None) -> None:
        if not SLUG_PATTERN.match(slug):
            raise validation_failure(
                f"slug {slug!r} must be lowercase letters, digits, '-' or '_'", "slug"
            )
        for source in self.sources.values():
            if source["slug"] == slug and source["id"] != except_id:
                raise validation_failure(f"a source with slug {slug!r} already exists", "slug")

    def _check_destination_settings(self, metadata_id: str, settings: Mapping[str, Any]) -> None:
        known = {option["name"] for option in DESTINATION_METADATA[metadata_id]["options"]}
        for key, value in settings.items():
            if key not in known:
                raise validation_failure(
                    f"unknown setting {key!r}; this destination takes {sorted(known)}",
                    f"settings.{key}",
                )
            if value is not None and not isinstance(value, str):
                raise validation_failure(f"setting {key!r} must be a string", f"settings.{key}")

    def _check_subscription(
        self, action_id: str, trigger: str, settings: Mapping[str, Any]
    ) -> None:
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
            raise validation_failure(
                "settings.headers must map names to strings", "settings.headers"
            )
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
                f"settings.batch_size must be between {BATCH_SIZE_RANGE[0]} and "
                f"{BATCH_SIZE_RANGE[1]}",
                "settings.batch_size",
            )

    # -- Tracking API --------------------------------------------------------------------------

    def _handle_tracking(self, request: HttpRequest) -> HttpResponse:
        kind = request.path[len("/v1/") :].strip("/")
        if request.method != "POST" or kind not in (*TRACKING_TYPES, "batch"):
            return json_response(404, {"success": False, "message": "not found"})
        raw = request.body
        if request.header("Content-Encoding").lower() == "gzip":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError):
                return json_response(400, {"success": False, "message": "invalid gzip body"})
        limit = MAX_BATCH_BYTES if kind == "batch" else MAX_EVENT_BYTES
        if len(raw) > limit:
            return json_response(
                400, {"success": False, "message": f"payload exceeds {limit // 1024} KB"}
            )
        try:
            payload = json.loads(raw)
        except ValueError:
            return json_response(400, {"success": False, "message": "invalid JSON"})
        if not isinstance(payload, dict):
            return json_response(400, {"success": False, "message": "body must be a JSON object"})
        if kind == "batch":
            items = payload.get("batch")
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                return json_response(
                    400, {"success": False, "message": "batch must be a list of events"}
                )
            if len(items) > MAX_BATCH_EVENTS:
                return json_response(
                    400, {"success": False, "message": f"more than {MAX_BATCH_EVENTS} events"}
                )
            for item in items:
                if len(compact_json(item)) > MAX_EVENT_BYTES:
                    return json_response(
                        400, {"success": False, "message": "an event exceeds 32 KB"}
                    )
            events = [self._inherit_batch_fields(payload, item) for item in items]
        else:
            events = [{**payload, "type": kind}]
        write_key = self._write_key(request, payload)
        self._accept(write_key, events)
        return json_response(200, {"success": True})

    @staticmethod
    def _inherit_batch_fields(batch: JsonObject, item: JsonObject) -> JsonObject:
        event = dict(item)
        for key in ("context", "integrations"):
            shared = batch.get(key)
            if isinstance(shared, dict):
                own = event.get(key)
                event[key] = {**shared, **own} if isinstance(own, dict) else dict(shared)
        return event

    @staticmethod
    def _write_key(request: HttpRequest, payload: JsonObject) -> str | None:
        scheme, _, credentials = request.header("Authorization").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            user = decoded.partition(":")[0]
            if user:
                return user
        body_key = payload.get("writeKey")
        return body_key if isinstance(body_key, str) and body_key else None

    def _drop(self, reason: str, event: JsonObject | None, write_key: str | None) -> None:
        self.dropped.append(
            {
                "reason": reason,
                "messageId": (event or {}).get("messageId"),
                "type": (event or {}).get("type"),
                "writeKeyKnown": write_key is not None,
                "at": utc_now_iso(),
            }
        )

    def _accept(self, write_key: str | None, events: list[JsonObject]) -> None:
        accepted: list[tuple[str, JsonObject]] = []
        with self.lock:
            source = next(
                (s for s in self.sources.values() if write_key and write_key in s["writeKeys"]),
                None,
            )
            for event in events:
                if source is None:
                    reason = "unknown write key" if write_key else "no write key"
                    self._drop(reason, event, write_key)
                    continue
                problem = self._event_problem(event)
                if problem is not None:
                    self._drop(problem, event, write_key)
                    continue
                if not source["enabled"]:
                    self._drop("source disabled", event, write_key)
                    continue
                stored = self._normalise(event)
                seen = self.message_ids.setdefault(source["id"], set())
                if stored["messageId"] in seen:
                    self.deduplicated += 1
                    continue
                seen.add(stored["messageId"])
                self.events.setdefault(source["id"], []).append(stored)
                accepted.append((source["id"], stored))
        for source_id, stored in accepted:
            self._fan_out(source_id, stored)

    @staticmethod
    def _event_problem(event: JsonObject) -> str | None:
        if event.get("type") not in TRACKING_TYPES:
            return f"unknown type {event.get('type')!r}"
        if not event.get("userId") and not event.get("anonymousId"):
            return "missing userId and anonymousId"
        if event["type"] == "track" and not event.get("event"):
            return "track without event"
        message_id = event.get("messageId")
        if message_id is not None and (
            not isinstance(message_id, str) or len(message_id) >= MAX_MESSAGE_ID_CHARS
        ):
            return "messageId must be a string under 100 characters"
        return None

    def _normalise(self, event: JsonObject) -> JsonObject:
        """What the collector adds before destinations see the event."""
        now = utc_now_iso()
        stored = {key: value for key, value in event.items() if key != "writeKey"}
        stored.setdefault("messageId", f"api-{self.event_ids.token(27)}")
        stored.setdefault("timestamp", stored.get("sentAt") or now)
        stored.setdefault("context", {})
        stored.setdefault("integrations", {})
        stored["receivedAt"] = now
        return stored

    # -- delivery ------------------------------------------------------------------------------

    def _fan_out(self, source_id: str, event: JsonObject) -> None:
        with self.lock:
            targets = [
                (destination, subscription)
                for destination in self.destinations.values()
                if destination["sourceId"] == source_id
                and destination["enabled"]
                and destination["metadataId"] == WEBHOOKS_ACTIONS_DESTINATION_ID
                for subscription in self.subscriptions.values()
                if subscription["destinationId"] == destination["id"]
                and subscription["enabled"]
                and subscription["actionId"] == WEBHOOKS_SEND_ACTION_ID
                and _compiled_trigger(subscription["trigger"]).matches(event)
            ]
            plans = [
                (subscription["id"], dict(subscription["settings"]), destination)
                for destination, subscription in targets
            ]
            secrets = {d["id"]: d["settings"].get("sharedSecret") for d, _ in targets}
        for subscription_id, settings, destination in plans:
            item = {
                "event": event,
                "settings": settings,
                "destination_id": destination["id"],
                "secret": secrets[destination["id"]],
            }
            if settings.get("enable_batching"):
                size = int(settings.get("batch_size") or BATCH_SIZE_RANGE[1])
                self._batcher.add(subscription_id, item, size)
            else:
                self._send(subscription_id, [item], batched=False)

    def _flush_batch(self, subscription_id: str, items: list[JsonObject]) -> None:
        self._send(subscription_id, items, batched=True)

    def _send(self, subscription_id: str, items: list[JsonObject], batched: bool) -> None:
        first = items[0]
        settings: JsonObject = first["settings"]
        events = [item["event"] for item in items]
        body = compact_json(events) if batched else compact_json(events[0])
        # Batches are signed over the first event serialized alone (docs/ARCHITECTURE.md).
        signed = compact_json(events[0]) if batched else body
        headers = {str(k): str(v) for k, v in (settings.get("headers") or {}).items()}
        headers.update({"Content-Type": JSON_TYPE, "User-Agent": DELIVERY_USER_AGENT})
        secret = first["secret"]
        if isinstance(secret, str) and secret:
            headers["X-Signature"] = segment_signature(secret, signed)
        self.deliveries.submit(
            OutboundRequest(
                delivery_id=f"dlv-{self.delivery_ids.token(16)}",
                url=str(settings["url"]),
                method=str(settings.get("method") or "POST"),
                headers=headers,
                body=body,
                retryable=_retryable_delivery,
                meta={
                    "destination_id": first["destination_id"],
                    "subscription_id": subscription_id,
                    "batched": batched,
                    "message_ids": [e.get("messageId") for e in events],
                },
            )
        )


# -- Public API handlers (registered in route order) ---------------------------------------------

HandlerResult = tuple[int, Any]


@_route("GET", "/sources")
def _list_sources(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    with emu.lock:
        items = [emu._render_source(s, caller) for s in emu.sources.values()]
    page, pagination = paginate(items, dict(req.query))
    return 200, {"sources": page, "pagination": pagination}


@_route("POST", "/sources")
def _create_source(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    with emu.lock:
        if body["metadataId"] not in SOURCE_METADATA:
            raise validation_failure(
                f"unknown source metadataId {body['metadataId']!r}", "metadataId"
            )
        emu._check_slug(body["slug"])
        source = {
            "id": emu.ids.token(22),
            "slug": body["slug"],
            "name": body.get("name") or body["slug"],
            "metadataId": body["metadataId"],
            "enabled": body["enabled"],
            "writeKeys": [emu.ids.token(32)],
            "settings": {k: v for k, v in (body.get("settings") or {}).items() if v is not None},
            "labels": [],
            "createdAt": utc_now_iso(),
        }
        emu.sources[source["id"]] = source
        return 200, {"source": emu._render_source(source, caller)}


@_route("GET", "/sources/{sourceId}")
def _get_source(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    with emu.lock:
        return 200, {"source": emu._render_source(emu._source(p["sourceId"]), caller)}


@_route("PATCH", "/sources/{sourceId}")
def _update_source(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    patch = body or {}
    with emu.lock:
        source = emu._source(p["sourceId"])
        if "slug" in patch:
            emu._check_slug(patch["slug"], except_id=source["id"])
        updated = dict(source)
        for key in ("name", "enabled", "slug"):
            if key in patch:
                updated[key] = patch[key]
        if "settings" in patch:
            updated["settings"] = merge_settings(source["settings"], patch["settings"] or {})
        emu.sources[source["id"]] = updated
        return 200, {"source": emu._render_source(updated, caller)}


@_route("DELETE", "/sources/{sourceId}")
def _delete_source(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    with emu.lock:
        source = emu._source(p["sourceId"])
        del emu.sources[source["id"]]
        for destination in [d for d in emu.destinations.values() if d["sourceId"] == source["id"]]:
            del emu.destinations[destination["id"]]
            for sid in [
                s for s, v in emu.subscriptions.items() if v["destinationId"] == destination["id"]
            ]:
                del emu.subscriptions[sid]
    return 200, {"status": "SUCCESS"}


def _require_source_admin(caller: Caller) -> None:
    if not caller.source_admin:
        raise ApiError(
            error_envelope(
                403, "Forbidden", "managing write keys needs the source admin permission"
            )
        )


@_route("POST", "/sources/{sourceId}/writekey", spec=False)
def _add_write_key(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    _require_source_admin(caller)
    with emu.lock:
        source = emu._source(p["sourceId"])
        key = emu.ids.token(32)
        source["writeKeys"] = [*source["writeKeys"], key]
        return 200, {"writeKey": key, "source": emu._render_source(source, caller)}


@_route("DELETE", "/sources/{sourceId}/writekey/{writeKey}", spec=False)
def _remove_write_key(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    _require_source_admin(caller)
    with emu.lock:
        source = emu._source(p["sourceId"])
        if p["writeKey"] not in source["writeKeys"]:
            raise not_found("write key of source", source["id"])
        source["writeKeys"] = [k for k in source["writeKeys"] if k != p["writeKey"]]
    return 200, {"status": "SUCCESS"}


@_route("GET", "/sources/{sourceId}/connected-destinations")
def _connected_destinations(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    with emu.lock:
        emu._source(p["sourceId"])
        items = [
            emu._render_destination(d)
            for d in emu.destinations.values()
            if d["sourceId"] == p["sourceId"]
        ]
    page, pagination = paginate(items, dict(req.query))
    return 200, {"destinations": page, "pagination": pagination}


@_route("GET", "/destinations")
def _list_destinations(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    with emu.lock:
        items = [emu._render_destination(d) for d in emu.destinations.values()]
    page, pagination = paginate(items, dict(req.query))
    return 200, {"destinations": page, "pagination": pagination}


@_route("POST", "/destinations")
def _create_destination(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    with emu.lock:
        metadata_id = body["metadataId"]
        if metadata_id not in DESTINATION_METADATA:
            raise validation_failure(
                f"unknown destination metadataId {metadata_id!r}", "metadataId"
            )
        if body["sourceId"] not in emu.sources:
            raise validation_failure(f"source {body['sourceId']!r} does not exist", "sourceId")
        settings = {k: v for k, v in body["settings"].items() if v is not None}
        emu._check_destination_settings(metadata_id, settings)
        destination = {
            "id": emu.ids.token(22),
            "name": body.get("name") or DESTINATION_METADATA[metadata_id]["name"],
            "enabled": bool(body.get("enabled", False)),
            "metadataId": metadata_id,
            "sourceId": body["sourceId"],
            "settings": settings,
            "createdAt": utc_now_iso(),
        }
        emu.destinations[destination["id"]] = destination
        return 200, {"destination": emu._render_destination(destination)}


@_route("GET", "/destinations/{destinationId}")
def _get_destination(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    with emu.lock:
        return 200, {"destination": emu._render_destination(emu._destination(p["destinationId"]))}


@_route("PATCH", "/destinations/{destinationId}")
def _update_destination(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    patch = body or {}
    with emu.lock:
        destination = emu._destination(p["destinationId"])
        updated = dict(destination)
        if "name" in patch:
            updated["name"] = (
                patch["name"] or DESTINATION_METADATA[destination["metadataId"]]["name"]
            )
        if "enabled" in patch:
            updated["enabled"] = patch["enabled"]
        if "settings" in patch:
            emu._check_destination_settings(destination["metadataId"], patch["settings"] or {})
            updated["settings"] = merge_settings(destination["settings"], patch["settings"] or {})
        emu.destinations[destination["id"]] = updated
        return 200, {"destination": emu._render_destination(updated)}


@_route("DELETE", "/destinations/{destinationId}")
def _delete_destination(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    with emu.lock:
        destination = emu._destination(p["destinationId"])
        del emu.destinations[destination["id"]]
        for sid in [
            s for s, v in emu.subscriptions.items() if v["destinationId"] == destination["id"]
        ]:
            del emu.subscriptions[sid]
    return 200, {"status": "SUCCESS"}


@_route("GET", "/destinations/{destinationId}/subscriptions")
def _list_subscriptions(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    with emu.lock:
        emu._destination(p["destinationId"])
        items = [
            emu._render_subscription(s)
            for s in emu.subscriptions.values()
            if s["destinationId"] == p["destinationId"]
        ]
    page, pagination = paginate(items, dict(req.query))
    return 200, {"subscriptions": page, "pagination": pagination}


@_route("POST", "/destinations/{destinationId}/subscriptions")
def _create_subscription(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    with emu.lock:
        destination = emu._destination(p["destinationId"])
        if destination["metadataId"] != WEBHOOKS_ACTIONS_DESTINATION_ID:
            raise validation_failure("this destination has no actions", "actionId")
        settings = {k: v for k, v in (body.get("settings") or {}).items() if v is not None}
        emu._check_subscription(body["actionId"], body["trigger"], settings)
        now = utc_now_iso()
        subscription = {
            "id": emu.ids.token(22),
            "name": body["name"],
            "actionId": body["actionId"],
            "actionSlug": WEBHOOKS_SEND_ACTION_SLUG,
            "destinationId": destination["id"],
            "enabled": body["enabled"],
            "settings": settings,
            "trigger": body["trigger"],
            "createdAt": now,
            "updatedAt": now,
        }
        emu.subscriptions[subscription["id"]] = subscription
        return 200, {"destinationSubscription": emu._render_subscription(subscription)}


@_route("GET", "/destinations/{destinationId}/subscriptions/{id}")
def _get_subscription(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    with emu.lock:
        subscription = emu._subscription(p["destinationId"], p["id"])
        return 200, {"subscription": emu._render_subscription(subscription)}


@_route("PATCH", "/destinations/{destinationId}/subscriptions/{id}")
def _update_subscription(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    patch = body["input"]
    with emu.lock:
        subscription = emu._subscription(p["destinationId"], p["id"])
        updated = dict(subscription)
        for key in ("name", "trigger", "enabled"):
            if key in patch:
                updated[key] = patch[key]
        if "settings" in patch:
            updated["settings"] = merge_settings(subscription["settings"], patch["settings"] or {})
        emu._check_subscription(updated["actionId"], updated["trigger"], updated["settings"])
        updated["updatedAt"] = utc_now_iso()
        emu.subscriptions[subscription["id"]] = updated
        return 200, {"subscription": emu._render_subscription(updated)}


@_route("DELETE", "/destinations/{destinationId}/subscriptions/{id}")
def _delete_subscription(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    with emu.lock:
        subscription = emu._subscription(p["destinationId"], p["id"])
        del emu.subscriptions[subscription["id"]]
    return 200, {"status": "SUCCESS"}


@_route("GET", "/catalog/sources/{sourceMetadataId}")
def _source_catalog(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    metadata = SOURCE_METADATA.get(p["sourceMetadataId"])
    if metadata is None:
        raise not_found("source catalog entry", p["sourceMetadataId"])
    return 200, {"sourceMetadata": metadata}


@_route("GET", "/catalog/destinations/{destinationMetadataId}")
def _destination_catalog(
    emu: SegmentEmulator, req: HttpRequest, caller: Caller, p: dict[str, str], body: Any
) -> HandlerResult:
    metadata = DESTINATION_METADATA.get(p["destinationMetadataId"])
    if metadata is None:
        raise not_found("destination catalog entry", p["destinationMetadataId"])
    return 200, {"destinationMetadata": metadata}


# -- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox segment", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0, help="seed of generated ids and keys")
    parser.add_argument("--token", action="append", default=[], help="extra source-admin token")
    parser.add_argument(
        "--token-noadmin", action="append", default=[], help="extra token without source admin"
    )
    parser.add_argument("--batch-window", type=float, default=0.5, help="seconds a batch collects")
    parser.add_argument("--rate-limit", type=int, default=1000, help="Public API calls/s per token")
    parser.add_argument("--delivery-attempts", type=int, default=5)
    parser.add_argument("--delivery-backoff", type=float, default=0.2, help="first retry delay, s")
    parser.add_argument("--delivery-timeout", type=float, default=10.0)
    parser.add_argument("--spec", default=None, help="path of the Segment OpenAPI spec")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    tokens = {token: True for token in args.token}
    tokens.update({token: False for token in args.token_noadmin})
    emulator = SegmentEmulator(
        args.host,
        args.port,
        seed=args.seed,
        tokens=tokens,
        batch_window_s=args.batch_window,
        rate_limit_per_s=args.rate_limit,
        spec_path=args.spec,
        delivery_attempts=args.delivery_attempts,
        delivery_backoff_s=args.delivery_backoff,
        delivery_timeout_s=args.delivery_timeout,
    )
    return emulator.serve_until_interrupted()
