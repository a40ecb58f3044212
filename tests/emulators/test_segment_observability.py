"""Segment emulator, what Segment reports about itself: `GET /events/volume` counts what the
Tracking API really accepted per source (an unknown write key counts nowhere), and
`GET /destinations/{id}/delivery-metrics` counts what the Webhooks deliveries really did.
Every answer is spec-checked by the `segment` fixture."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox.segment import SegmentEmulator
from sandbox.segment.observability import MetricsWindow, QueryError, event_name
from tests.emulators.helpers import (
    call,
    create_destination,
    create_source,
    create_subscription,
    track,
)
from tests.emulators.receiver import Receiver

V1BETA = "application/vnd.segment.v1beta+json"


def _window(minutes_back: int = 5, minutes_ahead: int = 1) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "startTime": (now - timedelta(minutes=minutes_back)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "endTime": (now + timedelta(minutes=minutes_ahead)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _volume(segment: SegmentEmulator, **params: Any) -> dict[str, Any]:
    reply = call(segment.url, "GET", "/events/volume",
                 params={"granularity": "MINUTE", **_window(), **params})
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()["data"]
    return data


def _metrics(segment: SegmentEmulator, destination_id: str, source_id: str) -> dict[str, int]:
    reply = call(segment.url, "GET", f"/destinations/{destination_id}/delivery-metrics",
                 media=V1BETA, params={"sourceId": source_id, "granularity": "MINUTE",
                                       **_window(10)})
    assert reply.status_code == 200, reply.text
    summary = reply.json()["data"]["deliveryMetricsSummary"]
    assert summary["sourceId"] == source_id
    return {m["metricName"]: m["total"] for m in summary["metrics"]}


def test_volume_counts_accepted_events_per_source_and_not_an_unknown_write_key(
    segment: SegmentEmulator,
) -> None:
    # GIVEN two sources, events on each, and events with a write key no source has
    app, other = create_source(segment.url, "app"), create_source(segment.url, "other")
    for i in range(3):
        reply = track(segment.url, app["writeKeys"][0], "track",
                      {"userId": "u1", "event": "Paid", "messageId": f"a{i}"})
        assert reply.status_code == 200
    track(segment.url, app["writeKeys"][0], "identify", {"userId": "u1", "messageId": "a-id"})
    track(segment.url, other["writeKeys"][0], "track",
          {"userId": "u2", "event": "Paid", "messageId": "o1"})
    # The Tracking API answers 200 to an unknown write key, and drops the events.
    wrong = track(segment.url, "not-a-write-key", "track",
                  {"userId": "u3", "event": "Paid", "messageId": "w1"})
    assert wrong.status_code == 200
    # A duplicate messageId is not counted twice.
    track(segment.url, app["writeKeys"][0], "track",
          {"userId": "u1", "event": "Paid", "messageId": "a0"})

    # WHEN the volume is asked per source and event name
    data = _volume(segment, groupBy="source,eventName")

    # THEN each source counts only what it accepted
    rows = {(r["source"]["id"], r["eventName"]): r["total"] for r in data["result"]}
    assert rows == {(app["id"], "Paid"): 3, (app["id"], "identify"): 1, (other["id"], "Paid"): 1}
    app_row = next(r for r in data["result"] if r["source"]["id"] == app["id"]
                   and r["eventName"] == "Paid")
    assert app_row["source"]["slug"] == "app"
    assert sum(point["count"] for point in app_row["series"]) == 3
    # AND a filter by source and type narrows it; without groupBy it is one total row
    only = _volume(segment, sourceId=app["id"], eventType="track")
    assert [r["total"] for r in only["result"]] == [3]
    assert only["query"]["sourceId"] == [app["id"]]
    assert _volume(segment)["result"][0]["total"] == 5


def test_volume_buckets_by_granularity_and_leaves_out_events_outside_the_window(
    segment: SegmentEmulator,
) -> None:
    source = create_source(segment.url, "app")
    track(segment.url, source["writeKeys"][0], "track", {"userId": "u", "event": "E"})
    # GIVEN a window that ended before the event WHEN asked THEN it counts nothing
    past = datetime.now(UTC) - timedelta(hours=2)
    data = _volume(segment, granularity="HOUR",
                   startTime=(past - timedelta(hours=3)).isoformat(),
                   endTime=past.isoformat())
    assert data["result"][0]["total"] == 0
    assert len(data["result"][0]["series"]) in (3, 4)  # whole hours covering the window
    # AND a DAY window holding now counts it in one bucket
    day = _volume(segment, granularity="DAY")["result"][0]
    assert day["total"] == 1 and sum(p["count"] for p in day["series"]) == 1


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"granularity": "WEEK"}, 400),  # not in the spec's enum
        ({"startTime": "yesterday"}, 422),
        ({"startTime": "2026-01-02T00:00:00Z", "endTime": "2026-01-01T00:00:00Z"}, 422),
        ({"groupBy": "colour"}, 422),
        ({"startTime": "2000-01-01T00:00:00Z", "endTime": "2026-01-01T00:00:00Z"}, 422),
    ],
)
def test_volume_refuses_bad_queries_with_a_4xx(
    segment: SegmentEmulator, params: dict[str, str], status: int
) -> None:
    reply = call(segment.url, "GET", "/events/volume",
                 params={"granularity": "MINUTE", **_window(), **params})
    assert reply.status_code == status, reply.text


def test_volume_needs_its_required_parameters(segment: SegmentEmulator) -> None:
    reply = call(segment.url, "GET", "/events/volume", params=_window())
    assert reply.status_code == 400
    assert "granularity" in reply.text


def test_delivery_metrics_count_successes_retries_and_final_failures(
    segment: SegmentEmulator,
) -> None:
    # GIVEN a destination whose endpoint answers 500 once, then 200, then 401 for good
    with Receiver(statuses=[500, 200, 401]) as receiver:
        source = create_source(segment.url, "app")
        destination = create_destination(segment.url, source["id"])
        create_subscription(segment.url, destination["id"], receiver.url + "/segment")
        key = source["writeKeys"][0]
        # WHEN two events are sent, one after the other
        track(segment.url, key, "track", {"userId": "u", "event": "A", "messageId": "m1"})
        receiver.wait_for(2)
        track(segment.url, key, "track", {"userId": "u", "event": "B", "messageId": "m2"})
        receiver.wait_for(3)
        assert segment.deliveries.wait_idle(10.0)

        # THEN one success after a retry, one discarded (401 is not retried)
        metrics = _metrics(segment, destination["id"], source["id"])
    assert metrics["successes"] == 1
    assert metrics["retried"] == 1
    assert metrics["discarded"] == 1
    assert metrics["expired"] == 0
    assert metrics["time_to_success"] == 1


def test_delivery_metrics_count_expired_deliveries(segment: SegmentEmulator) -> None:
    # GIVEN an endpoint that always answers 503 WHEN the retries are used up THEN expired
    attempts = segment.retry_policy.max_attempts
    with Receiver(statuses=[503] * attempts) as receiver:
        source = create_source(segment.url, "app")
        destination = create_destination(segment.url, source["id"])
        create_subscription(segment.url, destination["id"], receiver.url + "/segment")
        track(segment.url, source["writeKeys"][0], "track", {"userId": "u", "event": "A"})
        receiver.wait_for(attempts)
        assert segment.deliveries.wait_idle(10.0)
        metrics = _metrics(segment, destination["id"], source["id"])
    assert metrics == {**metrics, "successes": 0, "expired": 1, "retried": attempts - 1}


def test_delivery_metrics_of_an_unknown_destination_is_404(segment: SegmentEmulator) -> None:
    reply = call(segment.url, "GET", "/destinations/nope/delivery-metrics", media=V1BETA,
                 params={"sourceId": "x"})
    assert reply.status_code == 404
    assert reply.json()["errors"][0]["type"] == "NotFound"


def test_delivery_metrics_windows_follow_the_documented_limits() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    five_hours = [("granularity", "MINUTE"), ("startTime", "2026-12-01T06:00:00Z"),
                  ("endTime", "2026-12-01T11:00:00Z")]
    with pytest.raises(QueryError, match="at most 4:00:00"):
        MetricsWindow.parse(five_hours, now)
    too_old = [("granularity", "DAY"), ("startTime", "2026-11-01T00:00:00Z"),
               ("endTime", "2026-11-02T00:00:00Z")]
    with pytest.raises(QueryError, match="in the past"):
        MetricsWindow.parse(too_old, now)
    default = MetricsWindow.parse([], now)
    assert default.end == now and default.start == now - timedelta(hours=1)


@pytest.mark.parametrize(
    ("event", "name"),
    [
        ({"type": "track", "event": "Paid"}, "Paid"),
        ({"type": "page", "name": "Pricing"}, "Pricing"),
        ({"type": "identify"}, "identify"),
        ({"type": "track"}, "track"),
    ],
)
def test_event_name_dimension(event: dict[str, Any], name: str) -> None:
    assert event_name(event) == name


def test_report_endpoints_have_their_own_per_minute_rate_limit() -> None:
    # GIVEN the spec's 60 requests per minute, lowered to 3 for the test
    with SegmentEmulator(report_rate_limit_per_min=3) as segment:
        params = {"granularity": "MINUTE", **_window()}
        statuses = [call(segment.url, "GET", "/events/volume", params=params).status_code
                    for _ in range(4)]
        # THEN the fourth call in the minute is refused with the API's 429 ...
        assert statuses == [200, 200, 200, 429]
        refused = call(segment.url, "GET", "/events/volume", params=params)
        assert refused.json()["errors"][0]["data"]["msBeforeNext"] > 0
        # ... while other endpoints keep their own (per second) limit
        assert call(segment.url, "GET", "/sources",
                    params={"pagination[count]": "10"}).status_code == 200
        assert segment.state()["spec_violations"] == []
