"""Both emulators answer any body and any header with a status below 500, and keep working
after it: hostile JSON (a lone surrogate, NaN, 1e400, deep nesting, huge numbers, invalid
UTF-8), wrong content types, bad framing (`Content-Length: -1`, `abc`, two lengths, chunked)
and long paths (a 404 echoes at most `MAX_ECHO_CHARS` of them). Tests trust the emulators, so
they are held to the bridge's standard: input is never a 5xx."""

from __future__ import annotations

import base64
import http.client
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.emulator import Emulator
from sandbox.segment import ADMIN_TOKEN, SegmentEmulator
from sandbox.segment.routes import ROUTES as SEGMENT_ROUTES
from sandbox.userflow import API_VERSION, SANDBOX_API_KEY, UserflowEmulator
from sandbox.userflow.routes import ROUTES as USERFLOW_ROUTES
from sandbox.wire import MAX_ECHO_CHARS, parse_json
from tests.emulators.helpers import create_source

HOSTILE_BODIES: dict[str, bytes] = {
    "lone surrogate": b'{"userId":"u\\ud800","event":"E\\udfff","type":"track",'
    b'"name":"\\ud800","id":"\\ud800","attributes":{"k\\ud800":"v"},"user_id":"u"}',
    "NaN": b'{"userId":"u","event":"E","properties":{"a":NaN},"id":"g","attributes":{"a":NaN}}',
    "Infinity": b'{"userId":"u","event":"E","properties":{"a":-Infinity}}',
    "1e400": b'{"userId":"u","event":"E","id":"g","attributes":{"a":1e400},"slug":"s"}',
    "huge integer": b'{"userId":"u","event":"E","id":"g","attributes":{"a":' + b"9" * 5000
    + b"}}",
    "400-digit integer": b'{"userId":"u","event":"E","attributes":{"a":' + b"9" * 400 + b"}}",
    "deep nesting": b'{"userId":"u","event":"E","properties":' + b"[" * 100_000 + b"]" * 100_000
    + b"}",
    "moderate nesting": b'{"userId":"u","event":"E","properties":{"a":' + b"[" * 500
    + b"]" * 500 + b"}}",
    "invalid UTF-8": b'{"userId":"\xff\xfe","event":"E"}',
    "not JSON": b"\x00\x01 not json {",
    "array": b"[1, 2, 3]",
    "string": b'"just a string"',
    "empty": b"",
}
CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "application/vnd.segment.v1+json",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
]


@dataclass
class Target:
    emulator: Emulator
    headers: dict[str, str]
    paths: list[tuple[str, str]]  # (method, path)


def _concrete(template: str) -> str:
    return re.sub(r"\{\w+\}", "x", template)


@pytest.fixture(scope="module")
def targets() -> Iterator[list[Target]]:
    # The report endpoints' 60 calls a minute would turn most of their cases into 429s.
    with SegmentEmulator(delivery_attempts=1, report_rate_limit_per_min=100_000) as segment, \
            UserflowEmulator() as userflow:
        # A real source and write key: hostile events get past the write key check.
        write_key = create_source(segment.url, "hostile")["writeKeys"][0]
        segment_paths = [(r.method, _concrete(r.template)) for r in SEGMENT_ROUTES.routes]
        tracking = [("POST", f"/v1/{kind}") for kind in
                    ("identify", "track", "page", "screen", "group", "alias", "batch")]
        sandbox = [("POST", "/__sandbox__/faults"), ("POST", "/__sandbox__/simulate"),
                   ("GET", "/__sandbox__/nope")]
        yield [
            Target(segment, {"Authorization": f"Bearer {ADMIN_TOKEN}"},
                   segment_paths + sandbox),
            Target(segment, {"Authorization": "Basic " + _basic(write_key)}, tracking),
            Target(userflow, {"Authorization": f"Bearer {SANDBOX_API_KEY}",
                              "Userflow-Version": API_VERSION},
                   [(r.method, _concrete(r.template)) for r in USERFLOW_ROUTES.routes]
                   + sandbox),
        ]


def _basic(write_key: str) -> str:
    return base64.b64encode(f"{write_key}:".encode()).decode()


def _still_serving(emulator: Emulator) -> None:
    reply = requests.get(f"{emulator.url}/__sandbox__/state", timeout=10)
    assert reply.status_code == 200
    reply.json()


@pytest.mark.parametrize("body_name", list(HOSTILE_BODIES))
def test_hostile_bodies_get_a_4xx_or_less_on_every_route(
    targets: list[Target], body_name: str
) -> None:
    body = HOSTILE_BODIES[body_name]
    for target in targets:
        for method, path in target.paths:
            for content_type in CONTENT_TYPES[:3]:
                reply = requests.request(
                    method, target.emulator.url + path, data=body, timeout=10,
                    headers={**target.headers, "Content-Type": content_type})
                assert reply.status_code < 500, (body_name, method, path, reply.text[:300])
        # AND the state (which renders everything stored) still answers
        _still_serving(target.emulator)


@pytest.mark.parametrize(
    ("raw_headers", "status"),
    [
        ("Content-Length: -1\r\n", 400),
        ("Content-Length: abc\r\n", 400),
        ("Content-Length: \u00b2\r\n", 400),
        ("Content-Length: 3\r\nContent-Length: 4\r\n", 400),
        ("Content-Length: 99999999999\r\n", 413),
        ("Transfer-Encoding: chunked\r\n", 411),
    ],
)
def test_bad_framing_is_refused_with_a_4xx_not_a_hang(
    targets: list[Target], raw_headers: str, status: int
) -> None:
    for target in (targets[1], targets[2]):
        request = (f"POST /v1/track HTTP/1.1\r\nHost: x\r\n{raw_headers}\r\n{{}}").encode(
            "latin-1")
        with socket.create_connection((target.emulator.host, target.emulator.port),
                                      timeout=5) as conn:
            conn.sendall(request)
            answer = conn.recv(65536).decode("latin-1")
        assert answer.startswith(f"HTTP/1.1 {status} "), answer[:200]
        _still_serving(target.emulator)


@pytest.mark.parametrize("prefix", ["/", "/sources/", "/users/", "/__sandbox__/", "/v1/"])
def test_a_long_path_is_not_echoed_in_full(targets: list[Target], prefix: str) -> None:
    long_path = prefix + "a" * 20_000
    for target in targets:
        reply = requests.get(target.emulator.url + long_path, headers=target.headers, timeout=10)
        assert 400 <= reply.status_code < 500
        assert len(reply.content) < MAX_ECHO_CHARS + 400, reply.text[:300]
    log = targets[0].emulator.request_log()
    assert all(len(entry["path"]) <= MAX_ECHO_CHARS + 1 for entry in log)


def test_a_lone_surrogate_event_is_refused_and_nothing_is_stored(
    targets: list[Target],
) -> None:
    tracking = targets[1]
    stored_before = tracking.emulator.state()["events"]
    reply = requests.post(tracking.emulator.url + "/v1/track",
                          data=HOSTILE_BODIES["lone surrogate"], headers=tracking.headers,
                          timeout=10)
    assert reply.status_code == 400
    assert "surrogate" in reply.json()["message"]
    assert tracking.emulator.state()["events"] == stored_before


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"a":"\\ud800"}', "surrogate"),
        (b'{"a":NaN}', "NaN"),
        (b'{"a":1e400}', "out of range"),
        (b'{"a":' + b"1" * 309 + b"}", "out of range"),
        (b"[" * 65 + b"]" * 65, "nested"),
        (b"\xff", "UTF-8"),
    ],
)
def test_parse_json_names_what_is_wrong(raw: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_json(raw)


def test_parse_json_keeps_what_json_allows() -> None:
    assert parse_json(b'{"a":[1,2.5,"\\u00e9\\ud83d\\ude00",null,true]}') == {
        "a": [1, 2.5, "é😀", None, True]}
    assert parse_json(b"[" * 64 + b"]" * 64) is not None


header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.integers(min_value=0, max_value=10_000),
    body=st.one_of(st.binary(max_size=300),
                   st.sampled_from(list(HOSTILE_BODIES.values()))),
    content_type=st.one_of(st.sampled_from(CONTENT_TYPES), header_values),
    extra=st.dictionaries(
        st.sampled_from(["Content-Encoding", "Accept", "Authorization", "X-Signature",
                         "Userflow-Version", "Content-Type"]),
        header_values, max_size=3),
)
def test_any_body_and_any_header_is_answered_below_500(
    targets: list[Target], route: int, body: bytes, content_type: str,
    extra: dict[str, str],
) -> None:
    target = targets[route % len(targets)]
    method, path = target.paths[route % len(target.paths)]
    conn = http.client.HTTPConnection(target.emulator.host, target.emulator.port, timeout=10)
    try:
        headers = {**target.headers, "Content-Type": content_type, **extra,
                   "Content-Length": str(len(body))}
        conn.request(method, path, body=body, headers=headers)
        reply = conn.getresponse()
        reply.read()
    finally:
        conn.close()
    assert reply.status < 500, (method, path, body[:80], headers)
    _still_serving(target.emulator)
