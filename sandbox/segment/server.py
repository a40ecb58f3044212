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
from typing import Any, Unpack

from sandbox.segment.fql import FqlError, Node, parse_trigger
from sandbox.emulator import (
    JSON_TYPE,
    ApiError,
    DeliveryOptions,
    Emulator,
    Fault,
    HttpRequest,
    HttpResponse,
    IdFactory,
    JsonObject,
    NoRoute,
    OutboundRequest,
    Route,
    Router,
    add_delivery_arguments,
    add_server_arguments,
    compact_json,
    delivery_options,
    json_response,
    utc_now_iso,
)
from sandbox.segment.catalog import (
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
from sandbox.segment.spec import SegmentSpec, SpecRequest, load_spec

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


def tracking_error(status: int, message: str) -> HttpResponse:
    """The Tracking API's own error body (it has no `errors` envelope)."""
    return json_response(status, {"success": False, "message": message})


def rate_limited(wait_ms: int) -> HttpResponse:
    return error_envelope(429, "RateLimited", "Rate limit exceeded", data={"msBeforeNext": wait_ms})


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


_ROUTES: Router[Operation] = Router()


def _spec_path(route: Route[Operation]) -> str | None:
    """The spec's path template of a route, or None for endpoints outside the spec."""
    return route.template if route.handler.in_spec else None


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
        **delivery: Unpack[DeliveryOptions],
    ) -> None:
        super().__init__(host, port, seed=seed, **delivery)
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
            response = tracking_error(status, "injected fault")
        elif status == 404:
            response = error_envelope(404, "NotFound", "Resource not found")
        elif status == 422:
            response = error_envelope(422, "ValidationFailure", "Validation failure")
        elif status == 429:
            wait_s = fault.retry_after if fault.retry_after is not None else 0.1
            response = rate_limited(int(wait_s * 1000))
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

    @staticmethod
    def _match(request: HttpRequest) -> tuple[Route[Operation], dict[str, str]]:
        try:
            return _ROUTES.match(request)
        except NoRoute as missing:
            if missing.path_known:
                raise ApiError(
                    error_envelope(405, "MethodNotAllowed", f"{request.method} {request.path}")
                ) from None
            raise ApiError(
                error_envelope(404, "NotFound", f"no such endpoint {request.path}")
            ) from None

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
            response = rate_limited(wait_ms)
            response.headers["Retry-After"] = str(max(1, math.ceil(wait_ms / 1000)))
            raise ApiError(response)
        return {
            "X-RateLimit-Consumed": "1",
            "X-RateLimit-Remaining": str(self.rate_limit_per_s - used),
            "X-RateLimit-Reset": str(reset_ms),
        }

    def _validated_body(self, request: HttpRequest, spec_path: str | None) -> tuple[Any, str]:
        """Spec-check the request; answer 400 naming every violation. Returns (body, media)."""
        content_type = request.content_type
        if spec_path is None:
            media = content_type or JSON_TYPE
        else:
            accepted = self.spec.request_media_types(spec_path, request.method)
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
            violations = self.spec.request_violations(self._spec_request(request, media))
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

    def _spec_request(self, request: HttpRequest, media: str) -> SpecRequest:
        headers = {k: str(v) for k, v in request.headers.items()}
        return self.spec.request(
            request.method, request.path, request.query, headers, request.body, media
        )

    def _response_media(self, request: HttpRequest, spec_path: str | None, status: int) -> str:
        if spec_path is None:
            return JSON_TYPE
        offered = self.spec.response_media_types(spec_path, request.method, status)
        accept = [part.split(";")[0].strip() for part in request.header("Accept").split(",")]
        for media in accept:
            if media in offered:
                return media
        return offered[0] if offered else JSON_TYPE

    def _check_response(
        self, request: HttpRequest, spec_path: str | None, media: str, response: HttpResponse
    ) -> HttpResponse:
        if spec_path is None or not self.spec.declares_status(
            spec_path, request.method, response.status
        ):
            return response
        violations = self.spec.response_violations(
            self._spec_request(request, media),
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
        spec_path = _spec_path(route)
        media = request.content_type or JSON_TYPE
        try:
            caller = self._authenticate(request)
            rate_headers = self._rate_limit(caller)
            body, media = self._validated_body(request, spec_path)
            status, data = route.handler.run(PublicCall(self, request, caller, params, body))
            response = json_response(
                status, {"data": data}, self._response_media(request, spec_path, status)
            )
            response.headers.update(rate_headers)
        except ApiError as exc:
            response = exc.response
        # Every answer the spec declares (200, 404, 422, 429) is checked, errors included.
        return self._check_response(request, spec_path, media, response)

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

    # -- validation ----------------------------------------------------------------------------

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
            return tracking_error(404, "not found")
        raw = request.body
        if request.header("Content-Encoding").lower() == "gzip":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError):
                return tracking_error(400, "invalid gzip body")
        limit = MAX_BATCH_BYTES if kind == "batch" else MAX_EVENT_BYTES
        if len(raw) > limit:
            return tracking_error(400, f"payload exceeds {limit // 1024} KB")
        try:
            payload = json.loads(raw)
        except ValueError:
            return tracking_error(400, "invalid JSON")
        if not isinstance(payload, dict):
            return tracking_error(400, "body must be a JSON object")
        if kind == "batch":
            items = payload.get("batch")
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                return tracking_error(400, "batch must be a list of events")
            if len(items) > MAX_BATCH_EVENTS:
                return tracking_error(400, f"more than {MAX_BATCH_EVENTS} events")
            for item in items:
                if len(compact_json(item)) > MAX_EVENT_BYTES:
                    return tracking_error(400, f"an event exceeds {MAX_EVENT_BYTES // 1024} KB")
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


# -- Public API handlers -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Collection:
    """One kind of stored object, and what the shared list/get/update/delete handlers need."""

    what: str  # its name in 404 messages
    path: str  # the collection's path template; an object is at f"{path}/{{{param}}}"
    param: str  # the path parameter holding an object's id
    one: str  # the response key of one object
    many: str  # the response key of a list
    objects: Callable[[SegmentEmulator], dict[str, JsonObject]]
    render: Callable[[PublicCall, JsonObject], JsonObject]
    # Sources own destinations, destinations own subscriptions: (owner, field naming it).
    # A path naming the owner scopes the objects to it; deleting an owner deletes what it owns.
    owner: tuple[_Collection, str] | None
    patch_fields: tuple[str, ...]  # taken as given by PATCH (`settings` always merges)
    patch_envelope: str | None  # the key the PATCH body wraps its fields in, if any
    # After the merge, before storing: raise to refuse, or adjust `updated`.
    check_patch: Callable[[PublicCall, JsonObject, JsonObject, JsonObject], None]


def _check_source_patch(
    call: PublicCall, current: JsonObject, patch: JsonObject, updated: JsonObject
) -> None:
    if "slug" in patch:
        call.emu._check_slug(patch["slug"], except_id=current["id"])


def _check_destination_patch(
    call: PublicCall, current: JsonObject, patch: JsonObject, updated: JsonObject
) -> None:
    if "name" in patch and not patch["name"]:
        updated["name"] = DESTINATION_METADATA[current["metadataId"]]["name"]
    if "settings" in patch:
        # The patch itself, not the merge: a `null` for an unknown key is refused too.
        call.emu._check_destination_settings(current["metadataId"], patch["settings"] or {})


def _check_subscription_patch(
    call: PublicCall, current: JsonObject, patch: JsonObject, updated: JsonObject
) -> None:
    call.emu._check_subscription(updated["actionId"], updated["trigger"], updated["settings"])
    updated["updatedAt"] = utc_now_iso()


SOURCES = _Collection(
    what="source",
    path="/sources",
    param="sourceId",
    one="source",
    many="sources",
    objects=lambda emu: emu.sources,
    render=lambda call, source: call.emu._render_source(source, call.caller),
    owner=None,
    patch_fields=("name", "enabled", "slug"),
    patch_envelope=None,
    check_patch=_check_source_patch,
)
DESTINATIONS = _Collection(
    what="destination",
    path="/destinations",
    param="destinationId",
    one="destination",
    many="destinations",
    objects=lambda emu: emu.destinations,
    render=lambda call, destination: call.emu._render_destination(destination),
    owner=(SOURCES, "sourceId"),
    patch_fields=("name", "enabled"),
    patch_envelope=None,
    check_patch=_check_destination_patch,
)
SUBSCRIPTIONS = _Collection(
    what="subscription",
    path="/destinations/{destinationId}/subscriptions",
    param="id",
    one="subscription",
    many="subscriptions",
    objects=lambda emu: emu.subscriptions,
    render=lambda call, subscription: call.emu._render_subscription(subscription),
    owner=(DESTINATIONS, "destinationId"),
    patch_fields=("name", "trigger", "enabled"),
    patch_envelope="input",
    check_patch=_check_subscription_patch,
)
COLLECTIONS = (SOURCES, DESTINATIONS, SUBSCRIPTIONS)


def _owner_scope(call: PublicCall, kind: _Collection) -> tuple[str, str] | None:
    """(field, owner id) when the path names the owner, which must exist; None otherwise."""
    if kind.owner is None or kind.owner[0].param not in call.params:
        return None
    owner, field = kind.owner
    _find(call, owner)
    return field, call.params[owner.param]


def _find(call: PublicCall, kind: _Collection) -> JsonObject:
    """The object the path names (lock held), or 404."""
    ident = call.params[kind.param]
    scope = _owner_scope(call, kind)
    found = kind.objects(call.emu).get(ident)
    if found is None or (scope is not None and found[scope[0]] != scope[1]):
        raise not_found(kind.what, ident)
    return found


def _delete_with_owned(emu: SegmentEmulator, kind: _Collection, ident: str) -> None:
    del kind.objects(emu)[ident]
    for owned in COLLECTIONS:
        if owned.owner is not None and owned.owner[0] is kind:
            field = owned.owner[1]
            for owned_id in [i for i, o in owned.objects(emu).items() if o[field] == ident]:
                _delete_with_owned(emu, owned, owned_id)


def _list_handler(kind: _Collection) -> Callable[[PublicCall], HandlerResult]:
    def list_objects(call: PublicCall) -> HandlerResult:
        with call.emu.lock:
            scope = _owner_scope(call, kind)
            items = [
                kind.render(call, found)
                for found in kind.objects(call.emu).values()
                if scope is None or found[scope[0]] == scope[1]
            ]
        page, pagination = paginate(items, dict(call.request.query))
        return 200, {kind.many: page, "pagination": pagination}

    return list_objects


def _get_handler(kind: _Collection) -> Callable[[PublicCall], HandlerResult]:
    def get_object(call: PublicCall) -> HandlerResult:
        with call.emu.lock:
            return 200, {kind.one: kind.render(call, _find(call, kind))}

    return get_object


def _update_handler(kind: _Collection) -> Callable[[PublicCall], HandlerResult]:
    def update_object(call: PublicCall) -> HandlerResult:
        patch = call.body[kind.patch_envelope] if kind.patch_envelope else call.body or {}
        with call.emu.lock:
            current = _find(call, kind)
            updated = dict(current)
            for key in kind.patch_fields:
                if key in patch:
                    updated[key] = patch[key]
            if "settings" in patch:
                updated["settings"] = merge_settings(current["settings"], patch["settings"] or {})
            kind.check_patch(call, current, patch, updated)
            kind.objects(call.emu)[current["id"]] = updated
            return 200, {kind.one: kind.render(call, updated)}

    return update_object


def _delete_handler(kind: _Collection) -> Callable[[PublicCall], HandlerResult]:
    def delete_object(call: PublicCall) -> HandlerResult:
        with call.emu.lock:
            _delete_with_owned(call.emu, kind, _find(call, kind)["id"])
        return 200, {"status": "SUCCESS"}

    return delete_object


def _catalog_handler(
    table: Mapping[str, JsonObject], what: str, key: str
) -> Callable[[PublicCall], HandlerResult]:
    def catalog_entry(call: PublicCall) -> HandlerResult:
        (metadata_id,) = call.params.values()  # the one path parameter: the catalog id
        metadata = table.get(metadata_id)
        if metadata is None:
            raise not_found(what, metadata_id)
        return 200, {key: metadata}

    return catalog_entry


def _create_source(call: PublicCall) -> HandlerResult:
    body, emu = call.body, call.emu
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
        return 200, {"source": emu._render_source(source, call.caller)}


def _require_source_admin(caller: Caller) -> None:
    if not caller.source_admin:
        raise ApiError(
            error_envelope(
                403, "Forbidden", "managing write keys needs the source admin permission"
            )
        )


def _add_write_key(call: PublicCall) -> HandlerResult:
    _require_source_admin(call.caller)
    with call.emu.lock:
        source = _find(call, SOURCES)
        key = call.emu.ids.token(32)
        source["writeKeys"] = [*source["writeKeys"], key]
        return 200, {"writeKey": key, "source": call.emu._render_source(source, call.caller)}


def _remove_write_key(call: PublicCall) -> HandlerResult:
    _require_source_admin(call.caller)
    write_key = call.params["writeKey"]
    with call.emu.lock:
        source = _find(call, SOURCES)
        if write_key not in source["writeKeys"]:
            raise not_found("write key of source", source["id"])
        source["writeKeys"] = [k for k in source["writeKeys"] if k != write_key]
    return 200, {"status": "SUCCESS"}


def _create_destination(call: PublicCall) -> HandlerResult:
    body, emu = call.body, call.emu
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


def _create_subscription(call: PublicCall) -> HandlerResult:
    body, emu = call.body, call.emu
    with emu.lock:
        destination = _find(call, DESTINATIONS)
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
        # Create answers under its own key, unlike get and update (the spec says so).
        return 200, {"destinationSubscription": emu._render_subscription(subscription)}


def _serve(
    method: str, template: str, run: Callable[[PublicCall], HandlerResult], in_spec: bool = True
) -> None:
    _ROUTES.add(method, template, Operation(run, in_spec))


def _register_routes() -> None:
    for kind in COLLECTIONS:
        item = f"{kind.path}/{{{kind.param}}}"
        _serve("GET", kind.path, _list_handler(kind))
        _serve("GET", item, _get_handler(kind))
        _serve("PATCH", item, _update_handler(kind))
        _serve("DELETE", item, _delete_handler(kind))
    _serve("POST", SOURCES.path, _create_source)
    _serve("POST", DESTINATIONS.path, _create_destination)
    _serve("POST", SUBSCRIPTIONS.path, _create_subscription)
    # A source's destinations: the destinations list, scoped by the owner the path names.
    _serve("GET", "/sources/{sourceId}/connected-destinations", _list_handler(DESTINATIONS))
    _serve("POST", "/sources/{sourceId}/writekey", _add_write_key, in_spec=False)
    _serve("DELETE", "/sources/{sourceId}/writekey/{writeKey}", _remove_write_key, in_spec=False)
    _serve(
        "GET",
        "/catalog/sources/{sourceMetadataId}",
        _catalog_handler(SOURCE_METADATA, "source catalog entry", "sourceMetadata"),
    )
    _serve(
        "GET",
        "/catalog/destinations/{destinationMetadataId}",
        _catalog_handler(DESTINATION_METADATA, "destination catalog entry", "destinationMetadata"),
    )


_register_routes()


# -- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox segment", description=__doc__.split("\n")[0]
    )
    add_server_arguments(parser, seeded="ids and keys")
    parser.add_argument("--token", action="append", default=[], help="extra source-admin token")
    parser.add_argument(
        "--token-noadmin", action="append", default=[], help="extra token without source admin"
    )
    parser.add_argument("--batch-window", type=float, default=0.5, help="seconds a batch collects")
    parser.add_argument("--rate-limit", type=int, default=1000, help="Public API calls/s per token")
    add_delivery_arguments(parser)
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
        **delivery_options(args),
    )
    return emulator.serve_until_interrupted()
