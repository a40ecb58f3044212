"""Signature checks: a valid signature passes; each way of breaking it fails with its reason."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from bridge_code.signatures import (
    FIRST_ELEMENT_SCAN_BYTES,
    SignatureError,
    sign_segment,
    sign_userflow,
    verify_segment_signature,
    verify_userflow_signature,
)

BODY = json.dumps({"type": "track", "userId": "u1", "event": "Signed Up"}).encode()
NOW = 1_700_000_000


# --- Segment: X-Signature = hex HMAC-SHA1 over the body -------------------------------------

def test_segment_valid_signature_passes() -> None:
    verify_segment_signature(BODY, sign_segment(BODY, "s1"), ["s1"])


def test_segment_signature_is_hmac_sha1_of_the_raw_body() -> None:
    # GIVEN a signature computed independently of the module under test
    expected = hmac.new(b"s1", BODY, hashlib.sha1).hexdigest()
    # THEN it verifies, in upper case too (hex is case-insensitive)
    verify_segment_signature(BODY, expected.upper(), ["s1"])


def test_segment_missing_header() -> None:
    with pytest.raises(SignatureError, match="missing X-Signature"):
        verify_segment_signature(BODY, None, ["s1"])


def test_segment_malformed_header() -> None:
    with pytest.raises(SignatureError, match="malformed X-Signature"):
        verify_segment_signature(BODY, "sha1=abc", ["s1"])


def test_segment_wrong_secret() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify_segment_signature(BODY, sign_segment(BODY, "other"), ["s1"])


def test_segment_tampered_body() -> None:
    signature = sign_segment(BODY, "s1")
    with pytest.raises(SignatureError, match="does not match"):
        verify_segment_signature(BODY.replace(b"u1", b"u2"), signature, ["s1"])


def test_segment_no_secret_configured() -> None:
    with pytest.raises(SignatureError, match="no shared secret"):
        verify_segment_signature(BODY, sign_segment(BODY, "s1"), [])


def test_segment_rotation_accepts_old_and_new_secret() -> None:
    for secret in ("old", "new"):
        verify_segment_signature(BODY, sign_segment(BODY, secret), ["new", "old"])


def test_segment_batch_signed_over_first_element_compact() -> None:
    # GIVEN a batched delivery: Segment signs JSON.stringify(events[0]) only
    events = [{"type": "track", "userId": "é", "event": "A"}, {"type": "track", "event": "B"}]
    body = json.dumps(events, indent=2, ensure_ascii=True).encode()
    first = json.dumps(events[0], separators=(",", ":"), ensure_ascii=False).encode()
    # THEN the compact, non-ASCII-escaped serialization of the first element verifies
    verify_segment_signature(body, sign_segment(first, "s1"), ["s1"], batched=True)


def test_segment_batch_signed_over_first_element_raw_bytes() -> None:
    body = b'[ {"type": "track",  "event": "A"}, {"type": "track"} ]'
    first_raw = b'{"type": "track",  "event": "A"}'
    verify_segment_signature(body, sign_segment(first_raw, "s1"), ["s1"], batched=True)


def test_segment_first_element_signature_is_refused_unless_batching() -> None:
    # GIVEN an array whose first element carries a genuine signature (captured from a log)
    events = [{"type": "track", "userId": "u1", "event": "A"},
              {"type": "identify", "userId": "victim", "traits": {"role": "admin"}}]
    body = json.dumps(events).encode()
    first = json.dumps(events[0], separators=(",", ":")).encode()
    # THEN a stack whose destination does not batch accepts only a whole-body signature
    with pytest.raises(SignatureError, match="does not match"):
        verify_segment_signature(body, sign_segment(first, "s1"), ["s1"])


def test_segment_first_element_is_looked_for_in_a_bounded_prefix() -> None:
    # GIVEN a first element larger than any Segment event (which Segment caps at 32 KB)
    events = [{"type": "track", "event": "A", "pad": "x" * (FIRST_ELEMENT_SCAN_BYTES + 10)}]
    body = json.dumps(events).encode()
    first = json.dumps(events[0], separators=(",", ":")).encode()
    # THEN it is not parsed to check its signature
    with pytest.raises(SignatureError, match="does not match"):
        verify_segment_signature(body, sign_segment(first, "s1"), ["s1"], batched=True)


def test_segment_batch_signature_over_second_element_fails() -> None:
    events = [{"event": "A"}, {"event": "B"}]
    body = json.dumps(events).encode()
    second = json.dumps(events[1], separators=(",", ":")).encode()
    with pytest.raises(SignatureError, match="does not match"):
        verify_segment_signature(body, sign_segment(second, "s1"), ["s1"], batched=True)


def test_segment_error_messages_never_contain_secret_or_digest() -> None:
    good = sign_segment(BODY, "topsecret")
    with pytest.raises(SignatureError) as caught:
        verify_segment_signature(BODY + b" ", good, ["topsecret"])
    assert "topsecret" not in str(caught.value) and good not in str(caught.value)


# --- Userflow: t=<unix>,v1=<hex HMAC-SHA256 over "t.body"> -----------------------------------

def test_userflow_valid_signature_passes() -> None:
    verify_userflow_signature(BODY, sign_userflow(BODY, "w1", NOW), ["w1"], now=NOW + 10)


def test_userflow_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    digest = hmac.new(b"w1", f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    verify_userflow_signature(BODY, f"t={NOW},v1={digest}", ["w1"], now=NOW)


def test_userflow_missing_header() -> None:
    with pytest.raises(SignatureError, match="missing Userflow-Signature"):
        verify_userflow_signature(BODY, "", ["w1"], now=NOW)


def test_userflow_header_without_timestamp() -> None:
    digest = sign_userflow(BODY, "w1", NOW).split("v1=")[1]
    with pytest.raises(SignatureError, match="no t= timestamp"):
        verify_userflow_signature(BODY, f"v1={digest}", ["w1"], now=NOW)


def test_userflow_header_with_non_numeric_timestamp() -> None:
    with pytest.raises(SignatureError, match="t is not a number"):
        verify_userflow_signature(BODY, "t=yesterday,v1=00", ["w1"], now=NOW)


def test_userflow_header_without_v1() -> None:
    with pytest.raises(SignatureError, match="no v1= signature"):
        verify_userflow_signature(BODY, f"t={NOW},v0=abc", ["w1"], now=NOW)


def test_userflow_wrong_secret() -> None:
    with pytest.raises(SignatureError, match=r"no v1 signature .* matches"):
        verify_userflow_signature(BODY, sign_userflow(BODY, "other", NOW), ["w1"], now=NOW)


def test_userflow_tampered_body() -> None:
    header = sign_userflow(BODY, "w1", NOW)
    with pytest.raises(SignatureError, match="matches"):
        verify_userflow_signature(BODY + b"x", header, ["w1"], now=NOW)


def test_userflow_timestamp_changed_breaks_signature() -> None:
    digest = sign_userflow(BODY, "w1", NOW).split("v1=")[1]
    with pytest.raises(SignatureError, match="matches"):
        verify_userflow_signature(BODY, f"t={NOW + 1},v1={digest}", ["w1"], now=NOW)


@pytest.mark.parametrize("skew", [301, -301])
def test_userflow_timestamp_outside_tolerance(skew: int) -> None:
    header = sign_userflow(BODY, "w1", NOW)
    with pytest.raises(SignatureError, match="outside the 300 s tolerance"):
        verify_userflow_signature(BODY, header, ["w1"], now=NOW + skew)


def test_userflow_timestamp_at_tolerance_edge_passes() -> None:
    verify_userflow_signature(BODY, sign_userflow(BODY, "w1", NOW), ["w1"], now=NOW + 300)


def test_userflow_no_secret_configured() -> None:
    with pytest.raises(SignatureError, match="no webhook secret"):
        verify_userflow_signature(BODY, sign_userflow(BODY, "w1", NOW), [], now=NOW)


def test_userflow_rotation_several_v1_and_several_secrets() -> None:
    # GIVEN a header carrying a v1 from the old and one from the new secret
    old = sign_userflow(BODY, "old", NOW).split("v1=")[1]
    new = sign_userflow(BODY, "new", NOW).split("v1=")[1]
    header = f"t={NOW},v1={old},v1={new}"
    # THEN a bridge knowing only either secret accepts it
    verify_userflow_signature(BODY, header, ["new"], now=NOW)
    verify_userflow_signature(BODY, header, ["old"], now=NOW)
    # AND a bridge knowing neither refuses it
    with pytest.raises(SignatureError):
        verify_userflow_signature(BODY, header, ["third"], now=NOW)


def test_segment_batch_first_element_with_lone_surrogate_as_javascript_writes_it() -> None:
    # GIVEN a first element holding a lone surrogate: JSON.stringify writes it as \ud800
    # (spaced out, so only the re-serialization, not the raw bytes, can match)
    body = b'[ {"event": "a\\ud800", "n": "\xc3\xa9"}, {"event": "b"} ]'
    signed_text = '{"event":"a\\ud800","n":"\u00e9"}'.encode()
    # THEN the signature over that text verifies
    verify_segment_signature(body, sign_segment(signed_text, "s1"), ["s1"], batched=True)


@pytest.mark.parametrize(("header", "reason"), [
    ("t=\u00b2,v1=00", "t is not a number"),  # "²".isdigit() is True; int("²") fails
    ("t=" + "9" * 5000 + ",v1=" + "0" * 64, "too long"),
    ("t=" + "9" * 13 + ",v1=" + "0" * 64, "t is not a number"),
    ("t=1,v1=\u00e9" * 2, "v1 is not 64 hex characters"),  # compare_digest refuses non-ASCII
    ("t=1,v1=" + "\u0660" * 64, "v1 is not 64 hex characters"),  # Arabic-Indic digits
    ("t=1," + ",".join(["v1=" + "0" * 64] * 9), "too many v1"),
    ("t=-1,v1=" + "0" * 64, "t is not a number"),
    ("t=1,v1=00", "v1 is not 64 hex characters"),
])
def test_userflow_odd_headers_are_signature_errors(header: str, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify_userflow_signature(BODY, header, ["w1"], now=NOW)
