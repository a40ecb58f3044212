"""What Segment reports about itself, read through its Public API: the event volume a source
received (`GET /events/volume`) and the outcome of a destination's deliveries
(`GET /destinations/{destinationId}/delivery-metrics`), both in Segment's official spec 36.2.0.

They are how an operator sees what the Tracking API hides: it answers 200 to a write key no
source has and discards the events, so only Segment's own counts show that nothing arrived.
Segment's reports lag: its spec advises querying the volume about one minute behind the clock,
so a caller polls for a bounded time. Both endpoints allow 60 requests per minute.

A small read-only client (verify and the demo use it); the token is sent, never shown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

HTTP_TIMEOUT_S = 10.0
MEDIA_V1 = "application/vnd.segment.v1+json"
# The delivery metrics are a beta operation: the spec offers only these media types.
MEDIA_V1BETA = "application/vnd.segment.v1beta+json"
MAX_RATE_LIMIT_WAIT_S = 5.0
# The metrics that mean "Segment gave up on these events" (discarded: refused and not
# retried, e.g. a 401 from the bridge; expired: retries used up).
FAILURE_METRICS = ("discarded", "expired")


class SegmentReportError(RuntimeError):
    """The Public API refused a report request (the message names it and shows the answer)."""


@dataclass(frozen=True)
class DeliverySummary:
    """A destination's deliveries in a window, counted in events."""

    successes: int
    failures: int
    retried: int

    @property
    def failure_rate(self) -> float:
        total = self.successes + self.failures
        return self.failures / total if total else 0.0


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def summarise_metrics(metrics: list[dict[str, Any]]) -> DeliverySummary:
    """A delivery metrics summary's `metrics` list as successes / failures / retried."""
    totals = {str(m.get("metricName")): int(m.get("total") or 0) for m in metrics}
    return DeliverySummary(
        successes=totals.get("successes", 0),
        failures=sum(totals.get(name, 0) for name in FAILURE_METRICS),
        retried=totals.get("retried", 0),
    )


class SegmentReports:
    """Reads Segment's reports with a workspace token."""

    def __init__(self, api_url: str, token: str, session: requests.Session | None = None):
        self.api_url = api_url.rstrip("/")
        self._token = token
        self._http = session or requests.Session()

    def __repr__(self) -> str:
        return f"SegmentReports({self.api_url})"

    def _get(self, path: str, params: dict[str, str], media: str) -> dict[str, Any]:
        what = f"GET {path}"
        for _ in range(3):
            reply = self._http.get(
                self.api_url + path, params=params, timeout=HTTP_TIMEOUT_S,
                headers={"Authorization": f"Bearer {self._token}", "Accept": media},
            )
            if reply.status_code != 429:
                break
            time.sleep(min(MAX_RATE_LIMIT_WAIT_S, _wait_s(reply)))
        if reply.status_code != 200:
            raise SegmentReportError(
                f"{what} answered {reply.status_code}: {reply.text[:300]}")
        try:
            data: dict[str, Any] = reply.json()["data"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SegmentReportError(f"{what} answered no `data`: {reply.text[:300]}") from exc
        return data

    def event_volume(self, source_id: str, start: datetime, end: datetime,
                     event_name: str | None = None) -> int:
        """Events the source received in [start, end), optionally of one event name."""
        params = {"granularity": "MINUTE", "startTime": iso(start), "endTime": iso(end),
                  "sourceId": source_id}
        if event_name is not None:
            params["eventName"] = event_name
        data = self._get("/events/volume", params, MEDIA_V1)
        return sum(int(row.get("total") or 0) for row in data.get("result") or [])

    def deliveries(self, destination_id: str, source_id: str, start: datetime,
                   end: datetime) -> DeliverySummary:
        params = {"sourceId": source_id, "granularity": "MINUTE", "startTime": iso(start),
                  "endTime": iso(end)}
        data = self._get(f"/destinations/{destination_id}/delivery-metrics", params,
                         MEDIA_V1BETA)
        summary = data.get("deliveryMetricsSummary") or {}
        return summarise_metrics(list(summary.get("metrics") or []))


def _wait_s(reply: requests.Response) -> float:
    """How long a 429 asks to wait: `data.msBeforeNext`, else `Retry-After`, else 1 s."""
    try:
        errors = reply.json().get("errors") or [{}]
        return float(errors[0]["data"]["msBeforeNext"]) / 1000
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        pass
    try:
        return float(reply.headers.get("Retry-After") or 1)
    except ValueError:
        return 1.0
