"""Webhook signature verification for both inbound routes, before any JSON is trusted.

Order of checks (as stripe-python does it): parse the header, compute the expected digest
for every candidate secret (rotation), compare in constant time, check the timestamp, and
only then let the caller parse the body. Every failure raises `SignatureError` with its own
message; messages never contain a secret or a digest.
"""

from __future__ import annotations

import codecs
import contextlib
import hmac
import json
import re
from collections.abc import Sequence

from bridge_code.jsonenc import compact_encoder
from bridge_code.mapping import SEGMENT_EVENT_LIMIT

USERFLOW_TOLERANCE_SECONDS = 300
# A batch's first event is looked for in this many leading bytes only, so that an unsigned
# body costs a bounded parse: Segment caps an event at 32 KB, and the rest is room for the
# whitespace a sender may put around it.
FIRST_ELEMENT_SCAN_BYTES = 2 * SEGMENT_EVENT_LIMIT
# Header sizes: a genuine Userflow-Signature is t (10 digits) and one or two v1 digests.
USERFLOW_HEADER_MAX_CHARS = 1024
USERFLOW_MAX_CANDIDATES = 8
_HEX_SHA1 = re.compile(r"[0-9a-fA-F]{40}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
# A genuine header as Userflow writes it, "t=<digits>,v1=<digest>": what the general parse
# gives for it, read in one match.
_USUAL_USERFLOW_HEADER = re.compile(r"t=([0-9]{1,12}),v1=([0-9a-fA-F]{64})")
_DECODER = json.JSONDecoder()
try:
    # OpenSSL's HMAC object straight away: `hmac.digest` gives the same digest, about a
    # microsecond later per request (its Python wrapper, and a one-shot call that looks the
    # algorithm up again in OpenSSL 3). Private to CPython, hence the fallback.
    from _hashlib import hmac_new as _openssl_hmac
except ImportError:  # pragma: no cover - CPython builds without OpenSSL
    _openssl_hmac = None  # type: ignore[assignment]


class SignatureError(Exception):
    """The request is not proven to come from the sender; the message says why."""


def _hex_digest(secret: str, payload: bytes, algorithm: str) -> str:
    if _openssl_hmac is not None:
        return _openssl_hmac(secret.encode("utf-8"), payload, algorithm).hexdigest()
    return hmac.digest(secret.encode("utf-8"), payload, algorithm).hex()


def _matches_any(candidates: Sequence[str], secrets: Sequence[str], payloads: Sequence[bytes],
                 algorithm: str) -> bool:
    # Compare against every secret and payload without stopping early, so the time taken does
    # not tell which secret (old or new) was close.
    found = False
    for secret in secrets:
        for payload in payloads:
            expected = _hex_digest(secret, payload, algorithm)
            for candidate in candidates:
                found |= hmac.compare_digest(expected, candidate.strip().lower())
    return found


def _first_element_bytes(raw_body: bytes) -> list[bytes]:
    """Byte strings a batched Segment delivery may have signed: its first element.

    Segment signs the first event serialized alone (JSON.stringify). We accept either the
    compact re-serialization of the parsed element or its raw bytes as sent, because which of
    the two the sender hashed is not documented precisely.
    """
    # Decoded incrementally so that a multi-byte character cut at the scan limit is left
    # out instead of failing the decode.
    text = codecs.getincrementaldecoder("utf-8")().decode(
        raw_body[:FIRST_ELEMENT_SCAN_BYTES], final=False)
    start = text.index("[") + 1
    while start < len(text) and text[start] in " \t\r\n":
        start += 1
    first, end = _DECODER.raw_decode(text, start)
    raw = text[start:end].encode("utf-8")
    compact = json_stringify(first).encode("utf-8")
    return [compact] if compact == raw else [compact, raw]


_compact_unicode = compact_encoder(ensure_ascii=False)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_stringify(value: object) -> str:
    """JavaScript's JSON.stringify output for a parsed value: compact, non-ASCII kept, key
    order kept, lone surrogates escaped as \\uXXXX (well-formed JSON.stringify, ES2019)."""
    text = _compact_unicode(value)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def verify_segment_signature(raw_body: bytes, header: str | None,
                             secrets: Sequence[str], batched: bool = False) -> None:
    """Check `X-Signature` = hex HMAC-SHA1(shared secret, body); with `batched`, an array body
    may instead be signed over its first element alone (what Segment signs when batching).

    Without `batched` only the whole body counts: a first-element signature authenticates
    nothing after that element, so a stack whose destination does not batch refuses it.
    """
    if not secrets:
        raise SignatureError("no shared secret is configured")
    if header is None or not header.strip():
        raise SignatureError("missing X-Signature header")
    candidate = header.strip()
    if not _HEX_SHA1.fullmatch(candidate):
        raise SignatureError("malformed X-Signature header: expected 40 hex characters")
    payloads = [raw_body]
    if batched and raw_body.lstrip()[:1] == b"[":
        # Not a parsable array: only the whole-body signature can match, and the JSON error
        # is reported after authentication.
        with contextlib.suppress(ValueError, UnicodeDecodeError, RecursionError):
            payloads += _first_element_bytes(raw_body)
    if not _matches_any([candidate], secrets, payloads, "sha1"):
        raise SignatureError("X-Signature does not match the body")


def parse_userflow_header(header: str) -> tuple[int, list[str]]:
    """Split `t=<unix>,v1=<hex>[,v1=<hex>...]` into the timestamp and the v1 candidates."""
    usual = _USUAL_USERFLOW_HEADER.fullmatch(header)
    if usual is not None:
        return int(usual[1]), [usual[2]]
    return _parse_any_userflow_header(header)


def _parse_any_userflow_header(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    candidates: list[str] = []
    if len(header) > USERFLOW_HEADER_MAX_CHARS:
        raise SignatureError("malformed Userflow-Signature header: too long")
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        value = value.strip()
        if not sep:
            continue
        if key == "t":
            # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
            if not _UNIX_SECONDS.fullmatch(value):
                raise SignatureError("malformed Userflow-Signature header: t is not a number")
            timestamp = int(value)
        elif key == "v1" and value:
            # hmac.compare_digest refuses non-ASCII text: only well-formed digests compete.
            if not _HEX_SHA256.fullmatch(value):
                raise SignatureError(
                    "malformed Userflow-Signature header: v1 is not 64 hex characters")
            candidates.append(value)
    if len(candidates) > USERFLOW_MAX_CANDIDATES:
        raise SignatureError("malformed Userflow-Signature header: too many v1 signatures")
    if timestamp is None:
        raise SignatureError("malformed Userflow-Signature header: no t= timestamp")
    if not candidates:
        raise SignatureError("malformed Userflow-Signature header: no v1= signature")
    return timestamp, candidates


def verify_userflow_signature(raw_body: bytes, header: str | None, secrets: Sequence[str],
                              now: float,
                              tolerance: int = USERFLOW_TOLERANCE_SECONDS) -> None:
    """Check `Userflow-Signature`: v1 = hex HMAC-SHA256(secret, f"{t}.{raw_body}")."""
    if not secrets:
        raise SignatureError("no webhook secret is configured")
    if header is None or not header.strip():
        raise SignatureError("missing Userflow-Signature header")
    timestamp, candidates = parse_userflow_header(header)
    payload = str(timestamp).encode("ascii") + b"." + raw_body
    if not _matches_any(candidates, secrets, [payload], "sha256"):
        raise SignatureError("no v1 signature in Userflow-Signature matches the body")
    # Checked after the digest so a forged header learns nothing from which check failed
    # first; a genuine but old signature is a replay.
    if abs(now - timestamp) > tolerance:
        raise SignatureError(
            f"Userflow-Signature timestamp is outside the {tolerance} s tolerance")


def sign_segment(raw_body: bytes, secret: str) -> str:
    """The X-Signature a Segment sender puts on a body (used by tests and the bench)."""
    return _hex_digest(secret, raw_body, "sha1")


def sign_userflow(raw_body: bytes, secret: str, timestamp: int) -> str:
    """The Userflow-Signature header value for a body (used by tests and the bench)."""
    payload = str(timestamp).encode("ascii") + b"." + raw_body
    return f"t={timestamp},v1={_hex_digest(secret, payload, 'sha256')}"
