"""What Segment reports about itself: event volume per source (`GET /events/volume`) and the
delivery metrics of a destination (`GET /destinations/{destinationId}/delivery-metrics`).

Both are computed from what the emulator really did, never from what a client claims: the
volume from the events the Tracking API accepted for a source (an event sent with an unknown
write key is answered 200 and discarded, so it counts nowhere, as on the real service), the
delivery metrics from the Webhooks delivery attempts and their outcomes. They are how an
operator sees the drops the Tracking API hides.

Pure functions of stored data and query parameters; `handlers` wires them to the Public API.
Choices where the spec is silent (documented for clients built against the emulator):
- a track's `eventName` is its `event`, a page's or screen's its `name`, any other event's its
  type (`identify`, `group`, `alias`); `eventType` is the type;
- without `groupBy` the result is one row (zero counts included); with it, one row per group
  that holds at least one event;
- each row's `series` has one point per bucket of the window, empty buckets included; a window
  may hold at most `MAX_BUCKETS` buckets (422 beyond);
- array filters read repeated parameters, `name[0]=`-style keys and comma-separated values;
- delivery metrics count events (a batch of 5 is 5), attributed to the window by the time of
  their final attempt (`retried`: by the time of the attempt that was retried);
  `time_to_success` and `time_to_first_attempt` have as `total` the number of events measured
  and their average and p95 in milliseconds, from the event's `receivedAt`;
- the delivery-metrics window limits are those the spec's description states (MINUTE: 4 hours,
  at most 48 hours back; HOUR: 7 days back; DAY: 14 days back); without a window, the last
  `DEFAULT_METRICS_WINDOW`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

JsonObject = dict[str, Any]

GRANULARITIES: Mapping[str, timedelta] = {
    "MINUTE": timedelta(minutes=1),
    "HOUR": timedelta(hours=1),
    "DAY": timedelta(days=1),
}
GROUP_BY_DIMENSIONS = ("source", "eventName", "eventType")
VOLUME_FILTERS = ("sourceId", "eventName", "eventType", "appVersion")
MAX_BUCKETS = 10_000
MAX_FILTER_VALUES = 100
# (longest window, oldest start) per granularity, from the delivery-metrics description.
METRICS_LIMITS: Mapping[str, tuple[timedelta, timedelta]] = {
    "MINUTE": (timedelta(hours=4), timedelta(hours=48)),
    "HOUR": (timedelta(days=7), timedelta(days=7)),
    "DAY": (timedelta(days=14), timedelta(days=14)),
}
DEFAULT_METRICS_WINDOW = timedelta(hours=1)
EVENT_VOLUME_PATH = "/observability/event_volume/v2.json"


class QueryError(ValueError):
    """A query the API refuses (422); `field` names the parameter."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


# -- query parameters -----------------------------------------------------------------------------


def parse_time(value: str, field: str) -> datetime:
    """An ISO 8601 timestamp; one without an offset is UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise QueryError(f"{field} must be an ISO 8601 timestamp", field) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def query_list(query: Sequence[tuple[str, str]], name: str) -> list[str]:
    """Every value of an array parameter, however it was spelled (see the module docstring)."""
    pattern = re.compile(rf"^{re.escape(name)}(\[[^\]]*\])?$")
    values = [
        part.strip()
        for key, value in query
        if pattern.match(key)
        for part in value.split(",")
        if part.strip()
    ]
    if len(values) > MAX_FILTER_VALUES:
        raise QueryError(f"{name} takes at most {MAX_FILTER_VALUES} values", name)
    return values


def query_one(query: Sequence[tuple[str, str]], name: str) -> str | None:
    for key, value in query:
        if key == name:
            return value
    return None


def granularity_of(query: Sequence[tuple[str, str]], required: bool) -> str | None:
    value = query_one(query, "granularity")
    if value is None:
        if required:
            raise QueryError("granularity is required", "granularity")
        return None
    if value not in GRANULARITIES:
        raise QueryError(f"granularity must be one of {list(GRANULARITIES)}", "granularity")
    return value


def floor_to(moment: datetime, granularity: str) -> datetime:
    step = GRANULARITIES[granularity]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + step * ((moment - epoch) // step)


def buckets(start: datetime, end: datetime, granularity: str) -> list[datetime]:
    """The bucket starts covering [start, end)."""
    step = GRANULARITIES[granularity]
    first = floor_to(start, granularity)
    count = math.ceil((end - first) / step)
    if count > MAX_BUCKETS:
        raise QueryError(
            f"the window holds {count} {granularity} buckets; at most {MAX_BUCKETS}", "startTime"
        )
    return [first + step * i for i in range(count)]


# -- event volume ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeQuery:
    granularity: str
    start: datetime
    end: datetime
    group_by: tuple[str, ...]
    filters: Mapping[str, frozenset[str]]

    @classmethod
    def parse(cls, query: Sequence[tuple[str, str]]) -> VolumeQuery:
        granularity = granularity_of(query, required=True)
        assert granularity is not None  # required=True raised otherwise
        bounds = []
        for name in ("startTime", "endTime"):
            value = query_one(query, name)
            if value is None:
                raise QueryError(f"{name} is required", name)
            bounds.append(parse_time(value, name))
        start, end = bounds
        if end <= start:
            raise QueryError("endTime must be after startTime", "endTime")
        group_by = tuple(query_list(query, "groupBy"))
        unknown = [g for g in group_by if g not in GROUP_BY_DIMENSIONS]
        if unknown:
            raise QueryError(
                f"groupBy takes {list(GROUP_BY_DIMENSIONS)}, not {unknown}", "groupBy"
            )
        filters = {name: frozenset(query_list(query, name)) for name in VOLUME_FILTERS}
        return cls(granularity, start, end, group_by, {k: v for k, v in filters.items() if v})

    def echo(self, workspace_id: str) -> JsonObject:
        """The `query` the response repeats."""
        echoed: JsonObject = {
            "workspaceId": workspace_id,
            "granularity": self.granularity,
            "startTime": format_time(self.start),
            "endTime": format_time(self.end),
        }
        if self.group_by:
            echoed["groupBy"] = list(self.group_by)
        for name, values in self.filters.items():
            echoed[name] = sorted(values)
        return echoed


def event_name(event: Mapping[str, Any]) -> str:
    kind = str(event.get("type") or "")
    named = event.get("event") if kind == "track" else event.get("name")
    if kind in ("track", "page", "screen") and isinstance(named, str) and named:
        return named
    return kind


def _app_version(event: Mapping[str, Any]) -> str | None:
    context = event.get("context")
    app = context.get("app") if isinstance(context, dict) else None
    version = app.get("version") if isinstance(app, dict) else None
    return str(version) if version is not None else None


def _dimensions(source_id: str, event: Mapping[str, Any]) -> dict[str, str | None]:
    return {
        "source": source_id,
        "sourceId": source_id,
        "eventName": event_name(event),
        "eventType": str(event.get("type") or ""),
        "appVersion": _app_version(event),
    }


def event_volume(
    events_by_source: Mapping[str, Iterable[Mapping[str, Any]]],
    sources: Mapping[str, Mapping[str, Any]],
    query: VolumeQuery,
) -> list[JsonObject]:
    """The `result` rows of `GET /events/volume` over the accepted events of each source."""
    starts = buckets(query.start, query.end, query.granularity)
    index = {start: i for i, start in enumerate(starts)}
    counts: dict[tuple[str | None, ...], list[int]] = {}
    if not query.group_by:
        counts[()] = [0] * len(starts)
    for source_id, events in events_by_source.items():
        for event in events:
            received = event.get("receivedAt")
            if not isinstance(received, str):
                continue
            at = parse_time(received, "receivedAt")
            if not query.start <= at < query.end:
                continue
            dims = _dimensions(source_id, event)
            if any(dims[name] not in values for name, values in query.filters.items()):
                continue
            key = tuple(dims[name] for name in query.group_by)
            series = counts.setdefault(key, [0] * len(starts))
            series[index[floor_to(at, query.granularity)]] += 1
    rows: list[JsonObject] = []
    for key in sorted(counts, key=lambda k: tuple(str(v) for v in k)):
        series = counts[key]
        row: JsonObject = {}
        for name, value in zip(query.group_by, key, strict=True):
            if name == "source":
                source = sources.get(str(value)) or {}
                row["source"] = {
                    "id": str(value),
                    "name": str(source.get("name") or ""),
                    "slug": str(source.get("slug") or ""),
                }
            else:
                row[name] = value
        row["total"] = sum(series)
        row["series"] = [
            {"time": format_time(start), "count": n}
            for start, n in zip(starts, series, strict=True)
        ]
        rows.append(row)
    return rows


# -- delivery metrics -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsWindow:
    start: datetime
    end: datetime

    @classmethod
    def parse(cls, query: Sequence[tuple[str, str]], now: datetime) -> MetricsWindow:
        granularity = granularity_of(query, required=False) or "DAY"
        raw_start, raw_end = query_one(query, "startTime"), query_one(query, "endTime")
        end = parse_time(raw_end, "endTime") if raw_end is not None else now
        start = (
            parse_time(raw_start, "startTime")
            if raw_start is not None
            else end - DEFAULT_METRICS_WINDOW
        )
        if end <= start:
            raise QueryError("endTime must be after startTime", "endTime")
        longest, oldest = METRICS_LIMITS[granularity]
        if end - start > longest:
            raise QueryError(f"with {granularity} granularity the window is at most {longest}",
                             "startTime")
        if start < now - oldest:
            raise QueryError(
                f"with {granularity} granularity startTime is at most {oldest} in the past",
                "startTime",
            )
        return cls(start, end)

    def holds(self, stamp: object) -> bool:
        if not isinstance(stamp, str):
            return False
        return self.start <= parse_time(stamp, "at") < self.end


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * 0.95) - 1)] if ordered else 0


def _ms_since(received: object, at: object) -> float | None:
    if not isinstance(received, str) or not isinstance(at, str):
        return None
    try:
        delta = parse_time(at, "at") - parse_time(received, "receivedAt")
    except QueryError:
        return None
    return round(delta.total_seconds() * 1000, 1)


def _timing(name: str, values: Sequence[float]) -> JsonObject:
    average = round(sum(values) / len(values), 1) if values else 0
    return {
        "metricName": name,
        "total": len(values),
        "breakdown": [
            {"metricName": f"{name}_average", "value": average},
            {"metricName": f"{name}_p95", "value": _p95(values)},
        ],
    }


def delivery_metrics(
    attempts: Iterable[Mapping[str, Any]], destination_id: str, source_id: str,
    window: MetricsWindow,
) -> list[JsonObject]:
    """The `metrics` of a destination's delivery summary, from the delivery attempt log."""
    outcomes: Counter[str] = Counter()
    to_success: list[float] = []
    to_first: list[float] = []
    for attempt in attempts:
        if attempt.get("destination_id") != destination_id:
            continue
        if attempt.get("source_id") not in (None, source_id):
            continue
        if not window.holds(attempt.get("at")):
            continue
        message_ids = attempt.get("message_ids") or []
        received = attempt.get("received_at") or [None] * len(message_ids)
        n = len(message_ids)
        outcome = str(attempt.get("outcome"))
        if outcome == "success":
            outcomes["successes_on_first_attempt" if attempt.get("attempt") == 1
                     else "successes_after_retry"] += n
            to_success += [t for r in received if (t := _ms_since(r, attempt.get("at")))
                           is not None]
        else:
            outcomes[outcome] += n
        if attempt.get("attempt") == 1:
            to_first += [t for r in received if (t := _ms_since(r, attempt.get("at")))
                         is not None]
    first, retried = outcomes["successes_on_first_attempt"], outcomes["successes_after_retry"]
    return [
        {
            "metricName": "successes",
            "total": first + retried,
            "breakdown": [
                {"metricName": "successes_on_first_attempt", "value": first},
                {"metricName": "successes_after_retry", "value": retried},
            ],
        },
        {"metricName": "expired", "total": outcomes["expired"]},
        {"metricName": "discarded", "total": outcomes["discarded"]},
        {"metricName": "retried", "total": outcomes["retry"]},
        _timing("time_to_success", to_success),
        _timing("time_to_first_attempt", to_first),
    ]
