"""The operator's view of one environment: a CloudWatch dashboard, built as data.

`dashboard_body` is pure (names in, the dashboard's JSON document out), so the layout is
testable without AWS and `scripts/render_dashboard.py` draws the README's picture from the
very same document. Rows, top to bottom: what the dashboard is and the alarms' state; one
row per direction (events in and out, skipped by reason, latency); the two queues; the two
functions and the API (and Userflow's function URL when its webhooks arrive there). The
bridge's own metrics come from `components.aws.metrics`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.metrics import (
    DIRECTION_DIMENSION,
    ENVIRONMENT_DIMENSION,
    REASON_DIMENSION,
    BridgeMetricsDefinition,
)
from components.project import component_type

GRID_COLUMNS = 24  # a CloudWatch dashboard is 24 units wide
HEADER_HEIGHT = 3
GRAPH_HEIGHT = 6
Widget = dict[str, Any]


@dataclass(frozen=True)
class DashboardTargets:
    """The physical names and ids the widgets point at (plain strings: resolved outputs)."""

    region: str
    queue_name: str
    dead_letter_queue_name: str
    ingest_function_name: str
    delivery_function_name: str
    api_id: str
    stage_name: str
    alarm_arns: tuple[str, ...]
    userflow_function_url: bool = False
    """Userflow's webhooks arrive through the ingest function's URL, not the API."""


@dataclass(frozen=True)
class DashboardSettings:
    """What the graphs show besides the targets."""

    period_seconds: int
    """Aggregation period of every graph (the alarms' period, so both tell the same story)."""
    queue_age_alarm_seconds: int
    """Drawn on the work queue's age graph: where the queue-age alarm fires."""


def direction_label(direction: str) -> str:
    """`segment_to_userflow` -> `Segment → Userflow`."""
    source, _, target = direction.partition("_to_")
    return f"{source.capitalize()} → {target.capitalize()}"


def _graph(title: str, width: int, metrics: list[Any], targets: DashboardTargets,
           settings: DashboardSettings, **extra: Any) -> Widget:
    return {
        "type": "metric",
        "width": width,
        "height": GRAPH_HEIGHT,
        "properties": {
            "title": title,
            "region": targets.region,
            "view": "timeSeries",
            "stacked": False,
            "period": settings.period_seconds,
            "metrics": metrics,
            **extra,
        },
    }


def _direction_row(definition: BridgeMetricsDefinition, direction: str,
                   targets: DashboardTargets, settings: DashboardSettings) -> list[Widget]:
    label = direction_label(direction)
    dims = definition.dimensions(direction)
    counts = [[definition.namespace, metric, *dims, {"stat": "Sum", "label": metric}]
              for metric in definition.counters.values()]
    # Reasons are the bridge's to name: a search lists every one it has emitted.
    schema = ",".join(
        (definition.namespace, DIRECTION_DIMENSION, ENVIRONMENT_DIMENSION, REASON_DIMENSION))
    search = (f"SEARCH('{{{schema}}} MetricName=\"{definition.skipped}\" "
              f"{ENVIRONMENT_DIMENSION}=\"{definition.environment}\" "
              f"{DIRECTION_DIMENSION}=\"{direction}\"', 'Sum', {settings.period_seconds})")
    latency = [[definition.namespace, definition.latency, *dims, {"stat": stat, "label": stat}]
               for stat in ("p50", "p99", "Maximum")]
    return [
        _graph(f"{label}: accepted, delivered, dead-lettered, ambiguous", 8, counts,
               targets, settings),
        _graph(f"{label}: skipped by reason", 8,
               [[{"expression": search, "id": "skipped", "period": settings.period_seconds}]],
               targets, settings),
        _graph(f"{label}: delivery latency (ms)", 8, latency, targets, settings),
    ]


def _queue_graph(title: str, queue_name: str, targets: DashboardTargets,
                 settings: DashboardSettings, age_alarm_seconds: int | None) -> Widget:
    dims = ["QueueName", queue_name]
    metrics = [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", *dims,
         {"stat": "Maximum", "label": "messages visible"}],
        ["AWS/SQS", "ApproximateAgeOfOldestMessage", *dims,
         {"stat": "Maximum", "label": "age of oldest (s)", "yAxis": "right"}],
    ]
    extra: dict[str, Any] = {}
    if age_alarm_seconds is not None:
        extra["annotations"] = {"horizontal": [
            {"label": "queue-age alarm", "value": age_alarm_seconds, "yAxis": "right"}]}
    return _graph(title, 12, metrics, targets, settings, **extra)


def _function_graph(title: str, function_name: str, targets: DashboardTargets,
                    settings: DashboardSettings, width: int) -> Widget:
    metrics = [["AWS/Lambda", metric, "FunctionName", function_name,
                {"stat": "Sum", "label": metric.lower()}]
               for metric in ("Invocations", "Errors", "Throttles")]
    return _graph(title, width, metrics, targets, settings)


def _api_graph(targets: DashboardTargets, settings: DashboardSettings, width: int) -> Widget:
    dims = ["ApiId", targets.api_id, "Stage", targets.stage_name]
    metrics = [["AWS/ApiGateway", metric, *dims, {"stat": "Sum", "label": label}]
               for metric, label in (("Count", "requests"), ("4xx", "4xx"), ("5xx", "5xx"))]
    # With Userflow on the function URL the API carries Segment's deliveries and /health only.
    title = ("API (Segment, health): requests, 4xx, 5xx" if targets.userflow_function_url
             else "API: requests, 4xx, 5xx")
    return _graph(title, width, metrics, targets, settings)


def _function_url_graph(targets: DashboardTargets, settings: DashboardSettings,
                        width: int) -> Widget:
    """Userflow's front door when it is the ingest function's URL: Lambda's URL metrics."""
    dims = ["FunctionName", targets.ingest_function_name]
    metrics = [["AWS/Lambda", metric, *dims, {"stat": "Sum", "label": label}]
               for metric, label in (("UrlRequestCount", "requests"), ("Url4xxCount", "4xx"),
                                     ("Url5xxCount", "5xx"))]
    return _graph("Userflow function URL: requests, 4xx, 5xx", width, metrics, targets,
                  settings)


def _header(definition: BridgeMetricsDefinition, targets: DashboardTargets) -> list[Widget]:
    text = (
        f"## Userflow ⇄ Segment bridge: {definition.environment}\n"
        "One row per direction (events in and out, skipped by reason, latency from queue to "
        "delivery), then the queues, the functions and the API. Custom metrics: namespace "
        f"`{definition.namespace}`."
    )
    return [
        {"type": "text", "width": 12, "height": HEADER_HEIGHT, "properties": {"markdown": text}},
        {"type": "alarm", "width": 12, "height": HEADER_HEIGHT,
         "properties": {"title": "Alarms", "alarms": list(targets.alarm_arns)}},
    ]


def layout(rows: Sequence[Sequence[Widget]]) -> list[Widget]:
    """Place the rows on the grid: left to right, each row below the tallest of the last."""
    placed: list[Widget] = []
    y = 0
    for row in rows:
        x = 0
        for widget in row:
            if x + widget["width"] > GRID_COLUMNS:
                raise ValueError(f"row at y={y} is wider than {GRID_COLUMNS} columns")
            placed.append({**widget, "x": x, "y": y})
            x += widget["width"]
        y += max((w["height"] for w in row), default=0)
    return placed


def dashboard_body(definition: BridgeMetricsDefinition, targets: DashboardTargets,
                   settings: DashboardSettings) -> dict[str, Any]:
    """The dashboard's document (CloudWatch's dashboard body structure), as data."""
    rows: list[list[Widget]] = [_header(definition, targets)]
    rows += [_direction_row(definition, d, targets, settings) for d in definition.directions]
    rows.append([
        _queue_graph("Work queue: depth and age of oldest message", targets.queue_name,
                     targets, settings, settings.queue_age_alarm_seconds),
        _queue_graph("Dead-letter queue: depth and age of oldest message",
                     targets.dead_letter_queue_name, targets, settings, None),
    ])
    # Three graphs of 8 columns; four of 6 when the function URL is Userflow's front door.
    width = 6 if targets.userflow_function_url else 8
    doors = [_api_graph(targets, settings, width)]
    if targets.userflow_function_url:
        doors.append(_function_url_graph(targets, settings, width))
    rows.append([
        _function_graph("Ingest function: invocations, errors, throttles",
                        targets.ingest_function_name, targets, settings, width),
        _function_graph("Delivery function: invocations, errors, throttles",
                        targets.delivery_function_name, targets, settings, width),
        *doors,
    ])
    return {"widgets": layout(rows)}


def dashboard_json(definition: BridgeMetricsDefinition, targets: DashboardTargets,
                   settings: DashboardSettings) -> str:
    """`dashboard_body` serialized with sorted keys, so equal layouts give equal bytes."""
    return json.dumps(dashboard_body(definition, targets, settings), sort_keys=True,
                      ensure_ascii=False)


@dataclass(frozen=True)
class BridgeDashboardArgs:
    """What the dashboard component needs: the metric definition and the parts' names."""

    definition: BridgeMetricsDefinition
    settings: DashboardSettings
    region: str
    name_prefix: str
    """Prefix of every physical name (carries the environment)."""
    queue_name: pulumi.Input[str]
    dead_letter_queue_name: pulumi.Input[str]
    ingest_function_name: pulumi.Input[str]
    delivery_function_name: pulumi.Input[str]
    api_id: pulumi.Input[str]
    stage_name: pulumi.Input[str]
    alarm_arns: pulumi.Input[Sequence[str]]
    userflow_function_url: bool = False
    """Userflow's webhooks arrive through the ingest function's URL: graph it too."""


class BridgeDashboard(pulumi.ComponentResource):
    """One CloudWatch dashboard per environment, named after it."""

    dashboard_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: BridgeDashboardArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(component_type("BridgeDashboard"), name, None, opts)
        def body(names: list[Any]) -> str:
            queue, dead_letter, ingest, delivery, api_id, stage, alarm_arns = names
            targets = DashboardTargets(args.region, queue, dead_letter, ingest, delivery,
                                       api_id, stage, tuple(alarm_arns),
                                       args.userflow_function_url)
            return dashboard_json(args.definition, targets, args.settings)

        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-board",
            dashboard_name=f"{args.name_prefix}-bridge",
            dashboard_body=pulumi.Output.all(
                args.queue_name, args.dead_letter_queue_name, args.ingest_function_name,
                args.delivery_function_name, args.api_id, args.stage_name, args.alarm_arns,
            ).apply(body),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.dashboard_name = dashboard.dashboard_name
        self.register_outputs({"dashboard_name": self.dashboard_name})
