"""The shared HTTP layer: wait hints, capped retries, URL rules, errors without the token."""

from __future__ import annotations

import email.utils
import pickle

import pytest
from pulumi.runtime.rpc import UNKNOWN

from components.api_http import (
    ApiError,
    HttpClient,
    NotFoundError,
    RetryPolicy,
    check_base_url,
    redact,
    retry_delay,
    wait_hint_seconds,
)
from components.provider import diff_managed, unknown
from components.segment_api import SegmentClient, SegmentSettings, pagination_params
from tests.providers.conftest import SEGMENT_TOKEN, Sandbox, segment_api

NOW = 1_800_000_000.0


# -- pure functions ----------------------------------------------------------------------------


def test_ms_before_next_wins_over_headers() -> None:
    body = {"errors": [{"type": "RateLimited", "message": "x", "data": {"msBeforeNext": 1500}}]}
    assert wait_hint_seconds({"Retry-After": "9"}, body, now=NOW) == 1.5


def test_retry_after_seconds_and_http_date() -> None:
    assert wait_hint_seconds({"retry-after": "3"}, None, now=NOW) == 3.0
    date = email.utils.formatdate(NOW + 7, usegmt=True)
    assert wait_hint_seconds({"Retry-After": date}, None, now=NOW) == pytest.approx(7.0)


def test_an_unreadable_retry_after_falls_back_instead_of_failing() -> None:
    assert wait_hint_seconds({"Retry-After": "soon"}, None, now=NOW) is None
    assert wait_hint_seconds({"Retry-After": "soon", "X-RateLimit-Reset": "2"}, None) == 2.0


def test_rate_limit_reset_as_epoch_ms_epoch_s_or_delta() -> None:
    assert wait_hint_seconds({"X-RateLimit-Reset": str(int((NOW + 2) * 1000))}, {}, now=NOW) == (
        pytest.approx(2.0)
    )
    assert wait_hint_seconds({"X-RateLimit-Reset": str(NOW + 4)}, {}, now=NOW) == pytest.approx(4)
    assert wait_hint_seconds({"X-RateLimit-Reset": "5"}, {}, now=NOW) == 5.0
    assert wait_hint_seconds({}, {"errors": []}, now=NOW) is None


def test_retry_delay_is_capped_whatever_the_server_asks() -> None:
    policy = RetryPolicy(max_wait_s=30.0, base_backoff_s=0.5)
    assert retry_delay(policy, 1, 3600.0, 0.0) == 30.0
    assert retry_delay(policy, 1, 0.25, 0.0) == 0.25
    assert retry_delay(policy, 1, None, 0.0) == 0.5
    assert retry_delay(policy, 3, None, 0.0) == 2.0
    assert retry_delay(policy, 20, None, 1.0) == 30.0


def test_base_urls_must_be_https_except_on_loopback() -> None:
    assert check_base_url("https://eu1.api.segmentapis.com", "segmentApiUrl") is None
    assert check_base_url("http://127.0.0.1:8080", "segmentApiUrl") is None
    assert check_base_url("http://localhost:9/x", "bridge_url") is None
    problem = check_base_url("http://bridge.example.com", "bridge_url")
    assert problem is not None and "plain http" in problem and "bridge_url" in problem
    assert check_base_url("ftp://x", "bridge_url") is not None
    assert check_base_url("bridge.example.com", "bridge_url") is not None
    assert check_base_url("https://x.example.com/?a=1", "bridge_url") is not None


def test_redact_removes_every_secret() -> None:
    assert redact("token abc and abc", ["abc", ""]) == "token [redacted] and [redacted]"


def test_diff_managed_counts_unknowns_as_changes() -> None:
    olds = {"slug": "a", "name": "n"}
    assert diff_managed(olds, {"slug": "a", "name": "n"}, ("slug",), ("name",)) == ([], [])
    assert diff_managed(olds, {"slug": unknown(), "name": "m"}, ("slug",), ("name",)) == (
        ["slug"],
        ["name"],
    )


def test_pagination_query_is_the_deep_object_the_spec_requires() -> None:
    assert pagination_params(None) == {"pagination[count]": "200"}
    assert pagination_params("abc") == {"pagination[count]": "200", "pagination[cursor]": "abc"}


def test_a_client_refuses_to_be_pickled() -> None:
    client = HttpClient("Segment Public API", "https://api.segmentapis.com", "tok-123")
    with pytest.raises(TypeError, match="must not be pickled"):
        pickle.dumps(client)
    assert "tok-123" not in repr(client)


# -- against the Segment emulator --------------------------------------------------------------


def client_for(segment: Sandbox, sleeps: list[float], **policy: float) -> SegmentClient:
    retry = RetryPolicy(
        max_attempts=int(policy.get("max_attempts", 4)),
        max_wait_s=policy.get("max_wait_s", 0.05),
        base_backoff_s=0.01,
        timeout_s=policy.get("timeout_s", 5.0),
    )
    return SegmentClient(SegmentSettings(segment.url, SEGMENT_TOKEN), retry, sleeps.append)


def test_404_names_operation_and_id_and_shows_body_but_not_token(segment: Sandbox) -> None:
    client = client_for(segment, [])
    with pytest.raises(NotFoundError) as caught:
        client.get_source("nope123")
    message = str(caught.value)
    assert "read source nope123" in message
    assert "HTTP 404" in message and "NotFound" in message
    assert SEGMENT_TOKEN not in message


def test_429_storm_waits_the_capped_hint_then_succeeds(segment: Sandbox) -> None:
    sleeps: list[float] = []
    client = client_for(segment, sleeps, max_wait_s=0.05)
    segment.fault(method="GET", path_prefix="/sources", status=429, count=3, retry_after=120)
    assert list(client.list_sources()) == []
    assert sleeps == [0.05, 0.05, 0.05]  # asked for 120 s each time, capped
    statuses = [r["status"] for r in segment.requests() if r["path"] == "/sources"]
    assert statuses == [429, 429, 429, 200]


def test_429_storm_longer_than_the_attempts_fails_with_the_api_error(segment: Sandbox) -> None:
    client = client_for(segment, [], max_attempts=3)
    segment.fault(method="GET", path_prefix="/sources", status=429, count=5, retry_after=0.01)
    with pytest.raises(ApiError) as caught:
        list(client.list_sources())
    assert caught.value.status == 429
    assert "list sources" in str(caught.value) and "RateLimited" in str(caught.value)


def test_5xx_is_retried(segment: Sandbox) -> None:
    sleeps: list[float] = []
    client = client_for(segment, sleeps)
    segment.fault(method="GET", path_prefix="/sources", status=503, count=2)
    assert list(client.list_sources()) == []
    assert len(sleeps) == 2


def test_422_is_not_retried(segment: Sandbox) -> None:
    sleeps: list[float] = []
    client = client_for(segment, sleeps)
    with pytest.raises(ApiError) as caught:
        client.create_source({"slug": "Bad Slug", "enabled": True, "metadataId": "iUM16Md8P2"})
    assert caught.value.status == 422 and sleeps == []
    assert "create source Bad Slug" in str(caught.value)


def test_a_timed_out_post_is_not_repeated(segment: Sandbox) -> None:
    client = client_for(segment, [], timeout_s=0.3)
    segment.fault(method="POST", path_prefix="/sources", delay_s=0.8, count=1)
    body = {"slug": "slow-one", "enabled": True, "metadataId": "iUM16Md8P2"}
    with pytest.raises(ApiError, match="no response"):
        client.create_source(body)
    posts = [r for r in segment.requests() if r["method"] == "POST" and r["path"] == "/sources"]
    assert len(posts) <= 1  # the server may still be finishing the one slow call


def test_listing_follows_cursors_across_pages(
    segment: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small pages (the spec allows 1..200) so a few sources span several pages.
    monkeypatch.setattr("components.segment_api.PAGE_SIZE", 2)
    for index in range(5):
        segment_api(
            segment,
            "POST",
            "/sources",
            {"slug": f"s-{index}", "enabled": True, "metadataId": "iUM16Md8P2"},
        )
    client = client_for(segment, [])
    assert [s["slug"] for s in client.list_sources()] == [f"s-{i}" for i in range(5)]
    lists = [r for r in segment.requests() if r["method"] == "GET" and r["path"] == "/sources"]
    assert len(lists) == 3
    assert ["pagination[count]", "2"] in lists[0]["query"]
    assert any(pair[0] == "pagination[cursor]" for pair in lists[2]["query"])


def test_the_wire_sentinel_for_unknowns_counts_as_unknown() -> None:
    assert diff_managed({"url": "a"}, {"url": UNKNOWN}, (), ("url",)) == ([], ["url"])


def test_sessions_carry_user_agent_bearer_and_extra_headers() -> None:
    client = HttpClient(
        "Userflow API", "https://api.userflow.com", "ak_x", {"Userflow-Version": "v"}
    )
    session = client._session()
    assert str(session.headers["User-Agent"]).startswith("userflow-segment-pulumi/")
    assert session.headers["Authorization"] == "Bearer ak_x"
    assert session.headers["Userflow-Version"] == "v"
    client.close()
