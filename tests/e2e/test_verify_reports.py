"""The read client verify and the demo use for Segment's own reports (`ops/segment_reports`),
against the Segment emulator: counts as the API gives them, refusals as errors that show the
API's answer and never the token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ops.segment_reports import SegmentReportError, SegmentReports, summarise_metrics
from sandbox.segment import ADMIN_TOKEN, SegmentEmulator
from tests.emulators.helpers import create_destination, create_source, track


def test_event_volume_counts_one_source_and_one_event_name() -> None:
    with SegmentEmulator() as segment:
        source = create_source(segment.url, "userflow-test")
        other = create_source(segment.url, "app-test")
        for name in ("Flow Completed", "Flow Completed", "Flow Started"):
            track(segment.url, source["writeKeys"][0], "track", {"userId": "u", "event": name})
        track(segment.url, other["writeKeys"][0], "track",
              {"userId": "u", "event": "Flow Completed"})
        reports = SegmentReports(segment.url, ADMIN_TOKEN)
        since = datetime.now(UTC) - timedelta(minutes=2)
        until = datetime.now(UTC) + timedelta(minutes=1)
        assert reports.event_volume(source["id"], since, until, "Flow Completed") == 2
        assert reports.event_volume(source["id"], since, until) == 3
        # AND a destination without deliveries reports nothing delivered, nothing failed
        destination = create_destination(segment.url, other["id"])
        summary = reports.deliveries(destination["id"], other["id"], since, until)
        assert (summary.successes, summary.failures, summary.failure_rate) == (0, 0, 0.0)


def test_a_refused_report_names_the_call_and_hides_the_token() -> None:
    with SegmentEmulator() as segment:
        secret_token = "not-a-token-of-this-workspace"
        reports = SegmentReports(segment.url, secret_token)
        now = datetime.now(UTC)
        with pytest.raises(SegmentReportError) as raised:
            reports.event_volume("src", now - timedelta(minutes=1), now)
    assert "GET /events/volume answered 401" in str(raised.value)
    assert secret_token not in str(raised.value) and secret_token not in repr(reports)


def test_failures_are_discarded_plus_expired() -> None:
    summary = summarise_metrics([
        {"metricName": "successes", "total": 6},
        {"metricName": "discarded", "total": 1},
        {"metricName": "expired", "total": 1},
        {"metricName": "retried", "total": 4},
    ])
    assert (summary.successes, summary.failures, summary.retried) == (6, 2, 4)
    assert summary.failure_rate == 0.25
