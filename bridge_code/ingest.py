"""API Gateway (HTTP API, payload 2.0) entry point: verify, map-to-skip, enqueue, answer.

A request gets 2xx only once every event it carries is in SQS; the delivery handler does the
upstream calls. Routing, HTTP errors and the catch-all live here; mapping and signature
checks are the pure modules beside it.

The same function may also sit behind its own function URL (userflowIngress: functionUrl),
which sends the same payload 2.0 but lets any path through: there only Userflow's route and
health are served, so Segment's route stays behind the API's throttle.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge_code import VERSION
from bridge_code.envelope import (
    MAX_MESSAGE_BYTES,
    compact_json,
    event_text,
    pack_envelopes,
    text_size,
)
from bridge_code.ledger import ACCEPTED, Claim, Ledger, LedgerUnavailable
from bridge_code.logs import log, preview, summary, utc_isoformat
from bridge_code.mapping import (
    SEGMENT_EVENT_LIMIT,
    SEGMENT_MESSAGE_ID_MAX,
    is_mapping,
    segment_skip,
    userflow_skip,
)
from bridge_code.metrics import measured
from bridge_code.runtime import BridgeRuntime
from bridge_code.secret_store import SecretUnavailable
from bridge_code.signatures import (
    SignatureError,
    json_stringify,
    verify_segment_signature,
    verify_userflow_signature,
)
from bridge_code.stats import Direction

# Segment caps a batch at 500 KB (and an event at 32 KB): a Segment delivery beyond
# 512 KiB cannot be genuine. Userflow notifications are one small object each.
SEGMENT_BODY_LIMIT = 512 * 1024
USERFLOW_BODY_LIMIT = 256 * 1024
# Refused while reading the event, before any route runs (base64 adds a third).
ANY_BODY_LIMIT = max(SEGMENT_BODY_LIMIT, USERFLOW_BODY_LIMIT)
SKIP_REPLAY = "replay"
SKIP_OVERSIZE = "oversize"
SQS_BATCH_ENTRIES = 10
SQS_BATCH_BYTES = 250 * 1024
ENQUEUE_ATTEMPTS = 3
# What the function URL serves (the API serves every route). The paths are the project's
# (components/project.py, components/aws/api.py); tests/stacks/test_routes.py holds them equal.
FUNCTION_URL_PATHS = frozenset({"/userflow", "/health"})
# A function URL's host (requestContext.domainName): <url-id>.lambda-url.<region>.on.aws
FUNCTION_URL_LABEL = "lambda-url"


class HttpError(Exception):
    """An answer with a status and a message safe to show the caller."""

    status = 500

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class BadRequest(HttpError):
    status = 400


class Unauthorized(HttpError):
    status = 401


class NotFound(HttpError):
    status = 404


class MethodNotAllowed(HttpError):
    status = 405


class PayloadTooLarge(HttpError):
    status = 413


class TooManyRequests(HttpError):
    """Retry shortly: Segment retries 429 (and 408, 423, 5xx), and this is no server fault."""

    status = 429


class ServiceUnavailable(HttpError):
    status = 503


@dataclass(slots=True)
class Request:
    request_id: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    via_function_url: bool = False
    """Arrived through the function's own URL, not through API Gateway."""


@dataclass(slots=True)
class Result:
    """What a route did: the response body plus counts for the log line."""

    body: dict[str, Any]
    accepted: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n


def _strip_stage(path: str, stage: object) -> str:
    if isinstance(stage, str) and stage and stage != "$default":
        prefix = f"/{stage}"
        if path == prefix or path.startswith(prefix + "/"):
            return path[len(prefix):] or "/"
    return path


def arrived_via_function_url(context: Mapping[str, Any]) -> bool:
    """Whether Lambda's function URL (not API Gateway) made this event: its requestContext
    names the URL's own host. AWS writes requestContext; a caller cannot."""
    domain = context.get("domainName")
    if not isinstance(domain, str):
        return False
    labels = domain.lower().split(".")
    return len(labels) > 2 and labels[1] == FUNCTION_URL_LABEL


def parse_request(event: Mapping[str, Any]) -> Request:
    """The parts of an API Gateway v2 event the routes need; bad encodings are 400s."""
    context = event.get("requestContext")
    context = context if is_mapping(context) else {}
    http = context.get("http")
    http = http if is_mapping(http) else {}
    request_id = str(context.get("requestId") or uuid.uuid4())
    if len(request_id) > 128:
        request_id = preview(request_id, 128)
    method = str(http.get("method") or event.get("httpMethod") or "GET").upper()
    if len(method) > 16:
        method = preview(method, 16)
    path = str(event.get("rawPath") or http.get("path") or "/")
    headers = _lower_case_headers(event.get("headers"))
    raw = event.get("body")
    request = Request(request_id, method, _strip_stage(path, context.get("stage")), headers, b"",
                      arrived_via_function_url(context))
    if raw is None:
        return request
    if not isinstance(raw, str):
        raise BadRequest("request body is not text")
    encoded = bool(event.get("isBase64Encoded"))
    # Before decoding anything: a text holds at least one byte per character.
    if len(raw) > (ANY_BODY_LIMIT * 4 // 3 + 4 if encoded else ANY_BODY_LIMIT):
        raise PayloadTooLarge(f"request body is too large; the limit is {ANY_BODY_LIMIT}")
    if encoded:
        try:
            request.body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("request body is not valid base64") from None
    else:
        request.body = raw.encode("utf-8", "surrogatepass")
    return request


def _lower_case_headers(headers: object) -> dict[str, str]:
    """The headers by lower-case name, values as text. API Gateway's payload 2.0 has them so
    already: such a dict is taken as it is, sparing a copy of every header per request."""
    if type(headers) is dict:
        try:
            names = "".join(headers)
            "".join(headers.values())  # TypeError unless every value is text
        except TypeError:
            pass
        else:
            if names.lower() == names:  # lower() maps character by character, as below
                return headers
    return {str(k).lower(): str(v) for k, v in headers.items()} if is_mapping(headers) else {}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: valid JSON text, but Infinity once parsed
        raise ValueError("number out of range")
    return value


# Built once: json.loads with an option builds a decoder per call.
_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def parse_json(body: bytes | str) -> Any:
    """Strict JSON: NaN/Infinity, and numbers too large for a double, are refused because no
    upstream accepts them (and they would be written out as the non-JSON `Infinity`)."""
    try:
        return _STRICT_JSON.decode(body.decode("utf-8") if isinstance(body, bytes) else body)
    except (ValueError, RecursionError):
        raise BadRequest("request body is not valid JSON") from None


def response(status: int, body: Mapping[str, Any], request_id: str,
             headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", "x-request-id": request_id,
                    **(headers or {})},
        "body": compact_json(body),
        "isBase64Encoded": False,
    }


class IngestApp:
    """The routes; one instance per container, built from a `BridgeRuntime`."""

    def __init__(self, runtime: BridgeRuntime) -> None:
        self.runtime = runtime
        self.routes: dict[str, dict[str, Callable[[Request], Result]]] = {
            "/segment": {"POST": self.segment},
            "/userflow": {"POST": self.userflow},
            "/health": {"GET": self.health},
        }

    def handle(self, event: Mapping[str, Any], context: object = None) -> dict[str, Any]:
        started = time.perf_counter()
        request_id, route, status = "", "?", 500
        result: Result | None = None
        try:
            if not is_mapping(event):
                raise BadRequest("event is not an API Gateway request")
            request = parse_request(event)
            request_id, route = request.request_id, request.path
            methods = self.routes.get(request.path)
            if methods is None or (request.via_function_url
                                   and request.path not in FUNCTION_URL_PATHS):
                raise NotFound(f"no route {preview(request.path, 64)}")
            handler = methods.get(request.method)
            if handler is None:
                raise MethodNotAllowed(f"{request.method} is not allowed on {request.path}",
                                       {"allow": ", ".join(sorted(methods))})
            result = handler(request)
            status = 200
            answer = response(200, {**result.body, "request_id": request_id}, request_id)
        except HttpError as error:
            status = error.status
            request_id = request_id or str(uuid.uuid4())
            answer = response(status, {"error": error.message, "request_id": request_id},
                              request_id, error.headers)
        except Exception as error:
            status = 500
            request_id = request_id or str(uuid.uuid4())
            log("unhandled error", "ERROR", request_id=request_id, route=route,
                error=type(error).__name__)
            answer = response(500, {"error": "internal error", "request_id": request_id},
                              request_id)
        summary("request", request_id=request_id, route=route, status=status,
                accepted=result.accepted if result else 0,
                skipped=result.skipped if result else {},
                duration_ms=round((time.perf_counter() - started) * 1000, 2))
        return answer

    # --- routes ----------------------------------------------------------------------------

    def health(self, request: Request) -> Result:
        s = self.runtime.settings
        return Result(body={
            "status": "ok",
            "version": VERSION,
            "directions": {
                "segment_to_userflow": bool(s.queue_url and s.segment_shared_secret_arn
                                            and s.ledger_table),
                "userflow_to_segment": bool(s.queue_url and s.userflow_webhook_secret_arn),
            },
        })

    def segment(self, request: Request) -> Result:
        s = self.runtime.settings
        secret_id = self._configured(s.segment_shared_secret_arn,
                                     "Segment to Userflow", "SEGMENT_SHARED_SECRET_ARN")
        ledger = self.runtime.ledger
        if ledger is None:
            raise ServiceUnavailable("the Segment to Userflow direction is not configured "
                                     "(BRIDGE_LEDGER_TABLE is not set)")
        self._check_size(request.body, SEGMENT_BODY_LIMIT)
        header = request.headers.get("x-signature")
        batching = s.segment_batching
        self._verify(secret_id, lambda secrets: verify_segment_signature(
            request.body, header, secrets, batched=batching))
        text = _utf8(request.body)
        payload = parse_json(text)
        if isinstance(payload, dict):
            if len(request.body) > SEGMENT_EVENT_LIMIT:
                raise PayloadTooLarge(f"the event is {len(request.body)} bytes; Segment "
                                      f"caps an event at {SEGMENT_EVENT_LIMIT}")
            events: list[Any] = [payload]
        elif isinstance(payload, list):
            if not batching:
                raise BadRequest("expected one Segment event: this stack's destination "
                                 "does not batch")
            if not payload:
                raise BadRequest("the batch is empty")
            events = payload
            for index, item in enumerate(events):
                if not isinstance(item, dict):
                    raise BadRequest(f"batch element {index} is not an event object")
        else:
            raise BadRequest("expected a Segment event object or an array of them")
        # Segment authenticated the first event only (the whole body when not batched): that
        # one must be recent and not seen before; the ledger keeps what was accepted.
        message_id = _signed_message_id(events[0])
        self._check_fresh(events[0])
        result = Result(body={})
        keep: list[dict[str, Any]] = []
        # Each kept event's JSON text, written once: it is both measured and queued.
        texts: list[str] = []
        whole_body_small = len(request.body) <= SEGMENT_EVENT_LIMIT
        for event in events:
            skip = segment_skip(event, self.runtime.mapping)
            if skip is not None:
                result.skip(skip.reason)
                continue
            if isinstance(payload, dict):
                # A single event is queued as the bytes Segment sent (already proven valid
                # JSON), sparing a re-serialization on the hot path.
                encoded = event_text(event, text)
            else:
                encoded = compact_json(event)
                if not whole_body_small and _segment_event_size(
                        event, encoded) > SEGMENT_EVENT_LIMIT:
                    result.skip(SKIP_OVERSIZE)
                    continue
            keep.append(event)
            texts.append(encoded)
        if not keep:
            return self._enqueue("segment_to_userflow", keep, request, result)
        return self._enqueue_once(ledger, message_id, keep, request, result, texts)

    def _check_fresh(self, event: dict[str, Any]) -> None:
        s = self.runtime.settings
        moment = _segment_event_time(event)
        if moment is None:
            raise Unauthorized("the signed event has no receivedAt or timestamp: its age "
                               "cannot be checked")
        now = self.runtime.clock()
        if moment < now - s.acceptance_window_seconds:
            raise Unauthorized("the signed event is older than the acceptance window "
                               f"({s.acceptance_window_seconds:.0f} s)")
        if moment > now + s.future_skew_seconds:
            raise Unauthorized("the signed event is dated in the future")

    def _enqueue_once(self, ledger: Ledger, message_id: str, events: list[dict[str, Any]],
                      request: Request, result: Result, texts: list[str]) -> Result:
        """Claim the signed messageId, enqueue, then mark it accepted; a failed enqueue
        releases the claim, so Segment's retry after our 503 is taken, not skipped."""
        s = self.runtime.settings
        # Remembered for as long as the signed event can still pass the window.
        keep_seconds = s.acceptance_window_seconds + s.future_skew_seconds + s.accept_hold_seconds
        try:
            claim = ledger.claim(ACCEPTED, message_id, s.accept_hold_seconds, keep_seconds)
        except LedgerUnavailable as error:
            log("ledger unavailable", "WARNING", request_id=request.request_id, error=str(error))
            raise ServiceUnavailable("the replay ledger is unavailable; retry later") from None
        if claim.state == "done":
            result.skip(SKIP_REPLAY, len(events))
            return self._enqueue("segment_to_userflow", [], request, result)
        if claim.state == "busy":
            raise TooManyRequests("this event is being accepted by another request; retry",
                                  {"retry-after": "5"})
        try:
            self._enqueue("segment_to_userflow", events, request, result, texts)
        except BaseException:
            self._release(ledger, claim, request.request_id)
            raise
        try:
            ledger.complete(claim, keep_seconds)
        except LedgerUnavailable as error:
            # The events are queued: answer 2xx. The pending claim lapses after its hold, and
            # the delivery ledger stops a second upstream effect if a repeat gets through.
            log("ledger unavailable", "WARNING", request_id=request.request_id, error=str(error))
        return result

    @staticmethod
    def _release(ledger: Ledger, claim: Claim, request_id: str) -> None:
        try:
            ledger.release(claim)
        except LedgerUnavailable as error:  # the claim lapses after its hold instead
            log("ledger unavailable", "WARNING", request_id=request_id, error=str(error))

    def userflow(self, request: Request) -> Result:
        secret_id = self._configured(self.runtime.settings.userflow_webhook_secret_arn,
                                     "Userflow to Segment", "USERFLOW_WEBHOOK_SECRET_ARN")
        self._check_size(request.body, USERFLOW_BODY_LIMIT)
        header = request.headers.get("userflow-signature")
        now = self.runtime.clock()
        self._verify(secret_id, lambda secrets: verify_userflow_signature(
            request.body, header, secrets, now))
        text = _utf8(request.body)
        payload = parse_json(text)
        if not isinstance(payload, dict):
            raise BadRequest("expected a Userflow webhook notification object")
        result = Result(body={})
        skip = userflow_skip(payload, self.runtime.mapping)
        if skip is not None:
            result.skip(skip.reason)
            return self._enqueue("userflow_to_segment", [], request, result)
        return self._enqueue("userflow_to_segment", [payload], request, result,
                             [event_text(payload, text)])

    # --- steps -----------------------------------------------------------------------------

    def _configured(self, secret_id: str | None, direction: str, variable: str) -> str:
        if not secret_id or not self.runtime.settings.queue_url:
            missing = variable if not secret_id else "QUEUE_URL"
            raise ServiceUnavailable(f"the {direction} direction is not configured "
                                     f"({missing} is not set)")
        return secret_id

    @staticmethod
    def _check_size(body: bytes, limit: int) -> None:
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {limit}")

    def _verify(self, secret_id: str, check: Callable[[tuple[str, ...]], None]) -> None:
        secrets = self.runtime.secrets
        try:
            check(secrets.values(secret_id))
            return
        except SignatureError as error:
            first_error = error
        except SecretUnavailable:
            raise ServiceUnavailable("the signing secret could not be read") from None
        try:
            # The secret may have just been rotated: look again, at most once per minimum
            # refresh interval whatever the number of bad requests.
            if not secrets.refresh_if_stale(secret_id):
                raise Unauthorized(str(first_error))
            check(secrets.values(secret_id))
        except SignatureError as error:
            raise Unauthorized(str(error)) from None
        except SecretUnavailable:
            raise ServiceUnavailable("the signing secret could not be read") from None

    def _enqueue(self, direction: Direction, events: list[dict[str, Any]], request: Request,
                 result: Result, texts: list[str] | None = None) -> Result:
        """Queue `events` (their JSON `texts` when at hand) and count them in `result`."""
        stats = self.runtime.stats
        if events:
            received_at = utc_isoformat(self.runtime.clock())
            if texts is None:
                texts = [event_text(event) for event in events]
            bodies = pack_envelopes(direction, texts, received_at, request.request_id)
            sizes = [text_size(body) for body in bodies]
            for size in sizes:
                if size > MAX_MESSAGE_BYTES:  # only an event alone in its message can be
                    raise PayloadTooLarge(f"an event is {size} bytes once enqueued; "
                                          f"the limit is {MAX_MESSAGE_BYTES}")
            for chunk in _chunks(bodies, sizes) if len(bodies) > 1 else [bodies]:
                self._send_batch(direction, chunk)
            stats.add(direction, "accepted", len(events))
        for reason, n in result.skipped.items():
            stats.skip(direction, reason, n)
        result.accepted = len(events)
        # Nothing changes `skipped` from here on: the answer and the log line share it.
        result.body = {"accepted": len(events), "skipped": result.skipped}
        return result

    def _send_batch(self, direction: Direction, bodies: list[str]) -> None:
        # One attribute object for the call's entries: the client only reads its input.
        attributes = {"direction": {"DataType": "String", "StringValue": direction}}
        pending = [{"Id": str(i), "MessageBody": body, "MessageAttributes": attributes}
                   for i, body in enumerate(bodies)]
        sqs = self.runtime.aws.sqs
        for _ in range(ENQUEUE_ATTEMPTS):
            try:
                reply = sqs.send_message_batch(QueueUrl=self.runtime.settings.queue_url,
                                               Entries=pending)
            except Exception as error:
                log("enqueue failed", "WARNING", error=type(error).__name__)
                continue
            sent = {entry["Id"] for entry in reply.get("Successful", [])}
            pending = [entry for entry in pending if entry["Id"] not in sent]
            if not pending:
                return
        # The sender retries the whole request; events already queued may then be queued
        # twice, which messageId dedup (Segment) or upsert (Userflow /users) absorbs.
        raise ServiceUnavailable("the event queue is unavailable; retry later")


def _signed_message_id(event: dict[str, Any]) -> str:
    message_id = event.get("messageId")
    if not isinstance(message_id, str) or not message_id.strip():
        raise BadRequest("the signed event has no messageId (needed to refuse replays)")
    if len(message_id) >= SEGMENT_MESSAGE_ID_MAX:
        raise BadRequest(f"the signed event's messageId is not under {SEGMENT_MESSAGE_ID_MAX} "
                         "characters")
    return message_id


def _segment_event_time(event: dict[str, Any]) -> float | None:
    """When Segment received the event (receivedAt, set by Segment), else its timestamp."""
    for key in ("receivedAt", "timestamp"):
        value = event.get(key)
        if not isinstance(value, str) or len(value) > 64:
            continue
        try:
            moment = dt.datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            return moment.timestamp()
        except (ValueError, OverflowError):
            continue
    return None


def _segment_event_size(event: dict[str, Any], ascii_text: str) -> int:
    """The event's size as Segment counts it (JSON.stringify, UTF-8). Its escaped ASCII text
    (`ascii_text`) is never shorter, so it decides the common case without the exact measure."""
    if len(ascii_text) <= SEGMENT_EVENT_LIMIT:
        return len(ascii_text)
    return len(json_stringify(event).encode("utf-8", "surrogatepass"))


def _utf8(body: bytes) -> str:
    """The body as text; a body that is not UTF-8 is not JSON either (400)."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request body is not valid JSON") from None


def _chunks(bodies: list[str], sizes: list[int]) -> list[list[str]]:
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for body, n in zip(bodies, sizes, strict=True):
        if current and (len(current) == SQS_BATCH_ENTRIES or size + n > SQS_BATCH_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(body)
        size += n
    if current:
        chunks.append(current)
    return chunks


_APP: IngestApp | None = None


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Lambda entry point; the app (clients, secret cache, mapping) is built once per container."""
    global _APP
    if _APP is None:
        try:
            _APP = IngestApp(BridgeRuntime.from_environment())
        except Exception as error:
            request_id = str(uuid.uuid4())
            log("bridge misconfigured", "ERROR", request_id=request_id,
                error=f"{type(error).__name__}: {error}")
            return response(500, {"error": "bridge misconfigured", "request_id": request_id},
                            request_id)
    return measured(_APP.runtime.stats, _APP.handle, event, context)
