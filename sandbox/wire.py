"""What the emulators read and write on the wire: strict JSON bodies (bounded, so hostile input
gets a 4xx, never a 5xx), the request and response they pass around, and the timestamps and
compact JSON both vendors use.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from typing import Any

JSON_TYPE = "application/json"
# Input bounds: whatever a client sends, an emulator answers 4xx, never 5xx, in bounded time and
# memory (tests trust the emulators, so they are held to the bridge's standard).
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_NUMBER_DIGITS = 308  # beyond a double's range: JSON.parse would make it Infinity
MAX_ECHO_CHARS = 200  # how much of a client's path or value an answer or the log repeats

JsonObject = dict[str, Any]



def utc_now_iso() -> str:
    """ISO 8601 with milliseconds and a `Z`, as both vendors print timestamps."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def compact_json(value: Any) -> bytes:
    """`JSON.stringify` bytes: no spaces, non-ASCII kept, key order kept (the signing form)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def clip(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`text` cut to `limit` characters (marked with …), for echoing client input."""
    return text if len(text) <= limit else text[:limit] + "…"


class BadJson(ValueError):
    """A body that is not JSON as the vendors' APIs accept it (the message says why)."""


def _refuse_constant(name: str) -> Any:
    raise BadJson(f"{name} is not JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise BadJson(f"number {clip(literal, 20)} is out of range")
    return value


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise BadJson(f"number {clip(literal, 20)} is out of range")
    return int(literal)


def _check_tree(value: Any) -> None:
    """Nesting depth and strings: a lone surrogate (`"\\ud800"`) cannot be stored or sent
    as UTF-8, so it is refused here rather than failing later on the way out."""
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise BadJson(f"nested deeper than {MAX_JSON_DEPTH} levels")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                if isinstance(key, str):
                    todo.append((key, depth))
                todo.append((child, depth + 1))
        elif isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise BadJson("a string holds a lone surrogate (not valid Unicode)") from None


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, strictly: UTF-8, no NaN/Infinity, no number beyond a double's
    range (`1e400`), no lone surrogate, at most `MAX_JSON_DEPTH` levels. Raises `BadJson`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadJson("the body is not UTF-8") from None
    try:
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except RecursionError:
        raise BadJson(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except BadJson:
        raise
    except ValueError as exc:
        raise BadJson(f"invalid JSON: {clip(str(exc))}") from None
    _check_tree(value)
    return value


@dataclass(frozen=True)
class HttpRequest:
    """One request as the emulator sees it; headers are case-insensitive (email.Message)."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Message
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        value = self.headers.get(name)
        return default if value is None else str(value)

    @property
    def content_type(self) -> str:
        return self.header("Content-Type").split(";")[0].strip().lower()

    def query_value(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def json_response(
    status: int, payload: Any, content_type: str = JSON_TYPE, headers: dict[str, str] | None = None
) -> HttpResponse:
    return HttpResponse(status, compact_json(payload), content_type, dict(headers or {}))


class ApiError(Exception):
    """Raised inside a handler to answer with a ready-made response."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response
