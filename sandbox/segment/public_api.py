"""The Segment Public API's request pipeline: route, authenticate, rate-limit, validate the
request against the spec (400 naming every violation), run the handler, and validate the
answer against the spec too (a violation is an emulator bug: 500, kept in `spec_violations`).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from sandbox.emulator import NoRoute, Route
from sandbox.segment.models import Caller, Operation, PublicCall, error_envelope, rate_limited
from sandbox.segment.routes import ROUTES, spec_path
from sandbox.segment.spec import SpecRequest
from sandbox.wire import (
    JSON_TYPE,
    ApiError,
    BadJson,
    HttpRequest,
    HttpResponse,
    clip,
    json_response,
    parse_json,
)

if TYPE_CHECKING:
    from sandbox.segment.server import SegmentEmulator


def handle_public(emu: SegmentEmulator, request: HttpRequest) -> HttpResponse:
    route, params = _match(request)
    template = spec_path(route)
    media = request.content_type or JSON_TYPE
    try:
        caller = _authenticate(emu, request)
        rate_headers = _rate_limit(emu, caller.token, emu.rate_limit_per_s, 1.0)
        if route.handler.report:
            # Segment's report endpoints have their own, lower limit (per the spec).
            key = f"{caller.token} {route.template}"
            rate_headers = _rate_limit(emu, key, emu.report_rate_limit_per_min, 60.0)
        body, media = _validated_body(emu, request, template)
        status, data = route.handler.run(PublicCall(emu, request, caller, params, body))
        response = json_response(
            status, {"data": data}, _response_media(emu, request, template, status)
        )
        response.headers.update(rate_headers)
    except ApiError as exc:
        response = exc.response
    # Every answer the spec declares (200, 404, 422, 429) is checked, errors included.
    return _check_response(emu, request, template, media, response)


def _match(request: HttpRequest) -> tuple[Route[Operation], dict[str, str]]:
    try:
        return ROUTES.match(request)
    except NoRoute as missing:
        if missing.path_known:
            raise ApiError(
                error_envelope(405, "MethodNotAllowed", f"{request.method} {clip(request.path)}")
            ) from None
        raise ApiError(
            error_envelope(404, "NotFound", f"no such endpoint {clip(request.path)}")
        ) from None


def _authenticate(emu: SegmentEmulator, request: HttpRequest) -> Caller:
    scheme, _, token = request.header("Authorization").partition(" ")
    if scheme.lower() != "bearer" or token.strip() not in emu.tokens:
        raise ApiError(error_envelope(401, "Unauthorized", "missing or invalid Bearer token"))
    return Caller(token.strip(), emu.tokens[token.strip()])


def _rate_limit(emu: SegmentEmulator, key: str, limit: int, window_s: float) -> dict[str, str]:
    """Count one call against `key`'s fixed window; 429 once `limit` calls are used."""
    now = time.time()
    with emu.lock:
        started, used = emu.rate_windows.get(key, (now, 0))
        if now - started >= window_s:
            started, used = now, 0
        used += 1
        emu.rate_windows[key] = (started, used)
    reset_ms = int((started + window_s) * 1000)
    if used > limit:
        wait_ms = max(1, reset_ms - int(now * 1000))
        response = rate_limited(wait_ms)
        response.headers["Retry-After"] = str(max(1, math.ceil(wait_ms / 1000)))
        raise ApiError(response)
    return {
        "X-RateLimit-Consumed": "1",
        "X-RateLimit-Remaining": str(limit - used),
        "X-RateLimit-Reset": str(reset_ms),
    }


def _validated_body(
    emu: SegmentEmulator, request: HttpRequest, template: str | None
) -> tuple[Any, str]:
    """Spec-check the request; answer 400 naming every violation. Returns (body, media)."""
    content_type = request.content_type
    if template is None:
        media = content_type or JSON_TYPE
    else:
        accepted = emu.spec.request_media_types(template, request.method)
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
        body = _strict_json(request)
        violations = emu.spec.request_violations(_spec_request(emu, request, media))
        if violations:
            raise ApiError(
                error_envelope(
                    400,
                    "BadRequest",
                    "request violates the Segment Public API spec: " + "; ".join(violations),
                )
            )
        return body, media
    return _strict_json(request), media


def _strict_json(request: HttpRequest) -> Any:
    """The body, strictly parsed before the spec validator sees it: what the validator would
    let through (a lone surrogate, NaN, 1e400) could be stored but never rendered again."""
    if not request.body:
        return None
    try:
        return parse_json(request.body)
    except BadJson as exc:
        raise ApiError(error_envelope(400, "BadRequest", f"invalid JSON: {exc}")) from exc


def _spec_request(emu: SegmentEmulator, request: HttpRequest, media: str) -> SpecRequest:
    headers = {k: str(v) for k, v in request.headers.items()}
    return emu.spec.request(
        request.method, request.path, request.query, headers, request.body, media
    )


def _response_media(
    emu: SegmentEmulator, request: HttpRequest, template: str | None, status: int
) -> str:
    if template is None:
        return JSON_TYPE
    offered = emu.spec.response_media_types(template, request.method, status)
    accept = [part.split(";")[0].strip() for part in request.header("Accept").split(",")]
    for media in accept:
        if media in offered:
            return media
    return offered[0] if offered else JSON_TYPE


def _check_response(
    emu: SegmentEmulator,
    request: HttpRequest,
    template: str | None,
    media: str,
    response: HttpResponse,
) -> HttpResponse:
    if template is None or not emu.spec.declares_status(template, request.method, response.status):
        return response
    violations = emu.spec.response_violations(
        _spec_request(emu, request, media),
        response.status,
        response.body,
        response.content_type,
    )
    if not violations:
        return response
    with emu.lock:
        emu.spec_violations.append(
            {"method": request.method, "path": clip(request.path), "violations": violations}
        )
    return json_response(
        500, {"error": "emulator response violates the spec", "violations": violations}
    )
