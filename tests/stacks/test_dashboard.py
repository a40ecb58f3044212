"""The operator's view under Pulumi mocks: one dashboard per stack pointing at that stack's
parts and at the bridge's metrics, the queue-age alarm, and the README's picture of it."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge_code.metrics import MetricsSpec
from components.aws.dashboard import GRID_COLUMNS, layout
from components.aws.metrics import NAMESPACE, BridgeMetricsDefinition
from tests.stacks.conftest import RunStack, succeeded
from tests.stacks.graph import Run, config_value, environment, one, resources
from tests.stacks.harness import PROJECT, ROOT
from tests.stacks.test_stack_programs import AWS_STACKS, FUNCTION, QUEUE, effective

DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
API = "aws:apigatewayv2/api:Api"
STAGE = "aws:apigatewayv2/stage:Stage"
PICTURE = ROOT / "docs" / "dashboard.svg"


def render(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts.render_dashboard", *options],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def title(widget: dict[str, Any]) -> str:
    properties = widget["properties"]
    return str(properties.get("title") or properties["markdown"].splitlines()[0].lstrip("# "))


def body_of(run: Run) -> dict[str, Any]:
    (dashboard,) = resources(run, DASHBOARD)
    document: dict[str, Any] = json.loads(dashboard["inputs"]["dashboardBody"])
    return document


def plotted(body: dict[str, Any]) -> list[list[Any]]:
    return [metric for widget in body["widgets"] if widget["type"] == "metric"
            for metric in widget["properties"]["metrics"]]


def text_of(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False)


def overlapping(widgets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    cells: dict[tuple[int, int], str] = {}
    clashes = []
    for widget in widgets:
        for dx in range(widget["width"]):
            for dy in range(widget["height"]):
                cell = (widget["x"] + dx, widget["y"] + dy)
                if cell in cells:
                    clashes.append((cells[cell], title(widget)))
                cells[cell] = title(widget)
    return clashes


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_each_stack_has_one_dashboard_named_with_its_environment(
    stack: str, run_stack: RunStack
) -> None:
    run = succeeded(run_stack(stack))
    (dashboard,) = resources(run, DASHBOARD)
    assert dashboard["inputs"]["dashboardName"] == f"{PROJECT}-{environment(run)}-bridge"
    assert run["exports"]["dashboardName"] == dashboard["inputs"]["dashboardName"]


def test_the_local_stack_has_no_dashboard(run_stack: RunStack) -> None:
    run = succeeded(run_stack("local", bridgeUrl="http://127.0.0.1:9876"))
    assert resources(run, DASHBOARD) == []


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_body_points_at_this_stacks_queues_functions_api_and_alarms(
    stack: str, run_stack: RunStack
) -> None:
    run = succeeded(run_stack(stack))
    body = body_of(run)
    region = run["config"]["aws:region"]
    queues = {one(run, QUEUE, n)["inputs"]["name"] for n in ("queue-work", "queue-dead-letter")}
    functions = {one(run, FUNCTION, f"functions-{r}")["inputs"]["name"]
                 for r in ("ingest", "delivery")}
    (api,) = resources(run, API)
    (stage,) = resources(run, STAGE)
    api_id = stage["inputs"]["apiId"]
    assert api_id.startswith("api-") and api["inputs"]["name"] in api_id

    by_namespace: dict[str, set[tuple[str, str]]] = {}
    for metric in plotted(body):
        if isinstance(metric[0], str):
            names = metric[2:-1] if isinstance(metric[-1], dict) else metric[2:]
            pairs = set(zip(names[::2], names[1::2], strict=True))
            by_namespace.setdefault(metric[0], set()).update(pairs)
    assert {value for key, value in by_namespace["AWS/SQS"] if key == "QueueName"} == queues
    for metric_name in ("ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"):
        assert {m[3] for m in plotted(body) if m[:2] == ["AWS/SQS", metric_name]} == queues
    assert {v for k, v in by_namespace["AWS/Lambda"] if k == "FunctionName"} == functions
    for metric_name in ("Errors", "Throttles"):
        assert {m[3] for m in plotted(body) if m[:2] == ["AWS/Lambda", metric_name]} == functions
    assert ("ApiId", api_id) in by_namespace["AWS/ApiGateway"]
    assert {m[1] for m in plotted(body) if m[0] == "AWS/ApiGateway"} >= {"4xx", "5xx"}
    assert by_namespace[NAMESPACE] >= {("Environment", environment(run))}
    assert all(w["properties"]["region"] == region
               for w in body["widgets"] if w["type"] == "metric")
    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    alarm_names = {a["inputs"]["name"] for a in resources(run, ALARM)}
    assert len(alarm_widget["properties"]["alarms"]) == len(alarm_names) == 4
    assert {arn.rsplit(":", 1)[1] for arn in alarm_widget["properties"]["alarms"]} == alarm_names
    other = "production" if environment(run) == "staging" else "staging"
    assert f"{PROJECT}-{other}" not in text_of(body)


def test_each_direction_shows_its_counts_skips_and_latency_from_the_bridges_metrics(
    run_stack: RunStack,
) -> None:
    run = succeeded(run_stack("staging"))
    body = body_of(run)
    definition = BridgeMetricsDefinition(environment(run))
    for direction in definition.directions:
        dims = definition.dimensions(direction)
        mine = [m for m in plotted(body) if isinstance(m[0], str) and m[2:6] == dims]
        names = {m[1] for m in mine}
        assert names == {*definition.counters.values(), definition.latency}, direction
        assert all(m[0] == NAMESPACE for m in mine)
        searches = [m[0]["expression"] for m in plotted(body)
                    if isinstance(m[0], dict) and f'Direction="{direction}"' in m[0]["expression"]]
        assert len(searches) == 1
        assert f'MetricName="{definition.skipped}"' in searches[0]
        assert f'Environment="{definition.environment}"' in searches[0]
        assert searches[0].startswith(f"SEARCH('{{{NAMESPACE},")


def test_the_functions_emit_what_the_dashboard_reads(run_stack: RunStack) -> None:
    run = succeeded(run_stack("staging"))
    definition = BridgeMetricsDefinition(environment(run))
    for role in ("ingest", "delivery"):
        variables = one(run, FUNCTION, f"functions-{role}")["inputs"]["environment"]["variables"]
        spec = MetricsSpec.from_json(variables["BRIDGE_METRICS"])
        assert (spec.namespace, spec.environment) == (NAMESPACE, environment(run))
        assert spec.directions == definition.directions
        assert spec.counters == definition.counters
        assert (spec.skipped, spec.latency_ms) == (definition.skipped, definition.latency)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_widgets_fit_the_grid_without_overlapping(stack: str, run_stack: RunStack) -> None:
    widgets = body_of(succeeded(run_stack(stack)))["widgets"]
    assert all(w["x"] >= 0 and w["x"] + w["width"] <= GRID_COLUMNS for w in widgets)
    assert overlapping(widgets) == []


def test_a_row_wider_than_the_grid_is_refused() -> None:
    wide = {"type": "text", "width": 13, "height": 1, "properties": {"markdown": "x"}}
    with pytest.raises(ValueError, match="wider than 24"):
        layout([[wide, wide]])


def test_the_queue_age_alarm_watches_the_work_queue_with_the_default_threshold(
    run_stack: RunStack,
) -> None:
    run = succeeded(run_stack("staging"))
    alarm = one(run, ALARM, "alarms-queue-age")["inputs"]
    work_queue = one(run, QUEUE, "queue-work")["inputs"]["name"]
    assert alarm["name"] == f"{PROJECT}-{environment(run)}-delivery-stalled"
    assert (alarm["namespace"], alarm["metricName"], alarm["statistic"]) == (
        "AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum")
    assert alarm["dimensions"] == {"QueueName": work_queue}
    assert config_value(run, "alarmQueueAgeSeconds") is None
    assert alarm["threshold"] == effective(run).alarm_queue_age_seconds
    assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["treatMissingData"] == "notBreaching"
    # The dashboard draws the same threshold on the queue's age graph.
    (queue_widget,) = [w for w in body_of(run)["widgets"]
                       if w["properties"].get("title", "").startswith("Work queue")]
    (line,) = queue_widget["properties"]["annotations"]["horizontal"]
    assert line["value"] == alarm["threshold"]


def test_the_queue_age_threshold_and_actions_follow_config(run_stack: RunStack) -> None:
    topic = "arn:aws:sns:eu-central-1:123456789012:userflow-segment-staging-alarms"
    run = succeeded(run_stack("staging", alarmQueueAgeSeconds="1800", alarmTopicArn=topic,
                              alarmPeriodSeconds="60", alarmEvaluationPeriods="3"))
    alarm = one(run, ALARM, "alarms-queue-age")["inputs"]
    assert alarm["threshold"] == 1800
    assert (alarm["period"], alarm["evaluationPeriods"]) == (60, 3)
    assert alarm["alarmActions"] == alarm["okActions"] == [topic]
    other = one(run, ALARM, "alarms-dead-letter")["inputs"]
    assert (other["alarmActions"], other["okActions"]) == (alarm["alarmActions"],
                                                           alarm["okActions"])
    assert all(w["properties"]["period"] == 60
               for w in body_of(run)["widgets"] if w["type"] == "metric")


@pytest.mark.parametrize("value", ["59", "86401", "soon"])
def test_a_queue_age_threshold_out_of_range_stops_the_program_naming_the_key(
    value: str, run_stack: RunStack
) -> None:
    run = run_stack("staging", alarmQueueAgeSeconds=value)
    assert run.get("error_type") == "ConfigError", run.get("traceback")
    assert f"config {PROJECT}:alarmQueueAgeSeconds:" in run["error"]


def test_the_committed_picture_is_what_the_definition_draws_today(tmp_path: Path) -> None:
    check = render("--check")
    assert check.returncode == 0, check.stderr
    # The check can fail: a picture that differs from the definition's is called stale.
    stale = tmp_path / "dashboard.svg"
    stale.write_text(PICTURE.read_text(encoding="utf-8").replace("Alarms", "Alerts"))
    refused = render("--check", "--out", str(stale))
    assert refused.returncode == 1 and "stale" in refused.stderr


def drawn_titles(svg: str) -> list[str]:
    """Each box's title as the picture spells it (its bold lines joined), in drawing order."""
    titles: list[list[str]] = []
    for line in svg.splitlines()[2:]:  # past the root element and the background
        if line.startswith("<rect "):
            titles.append([])
        elif 'font-weight="bold"' in line:
            titles[-1].append(html.unescape(re.sub(r"<[^>]+>", "", line)))
    return [" ".join(words) for words in titles]


def test_the_picture_draws_every_widget_of_the_staging_dashboard(run_stack: RunStack) -> None:
    widgets = body_of(succeeded(run_stack("staging")))["widgets"]
    assert drawn_titles(PICTURE.read_text(encoding="utf-8")) == [title(w) for w in widgets]
