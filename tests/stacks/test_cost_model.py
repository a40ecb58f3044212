"""The bench's cost model per front door: Userflow's webhooks through API Gateway, or through
the ingest function's URL (userflowIngress: functionUrl), from the stacks' own config."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from bench.cost_model import (
    API_PER_MILLION,
    LOGS_PER_GB,
    Line,
    Measured,
    access_log_bytes,
    capacity,
    cost_lines,
    function_url_option,
    render,
    render_capacity,
    stack_config,
)

# Userflow→Segment as the bench measures it: one webhook per event, no ledger.
USERFLOW = Measured(
    events_per_request=1, ingest_cpu_per_request_s=0.0002, delivery_cpu_per_event_s=0.0004,
    message_bytes_per_event=900.0, events_per_message=1.0,
    log_bytes_per_request=700.0 + access_log_bytes(), log_bytes_per_delivery_invocation=700.0,
    ingest_aws_calls_per_request=1, delivery_aws_calls_per_event=0,
    upstream_calls_per_event=1.0, ledger_writes_per_event=0.0, upstream_batched=True)


def by_item(lines: list[Line]) -> dict[str, float]:
    return {line.item: line.dollars for line in lines}


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_the_stack_files_keep_api_gateway_for_userflow(stack: str) -> None:
    assert stack_config(stack).userflow_ingress == "apiGateway"


def test_the_function_url_drops_the_api_charge_and_the_access_log_line_only() -> None:
    config = stack_config("production")
    api = by_item(cost_lines(config, USERFLOW))
    url = by_item(cost_lines(replace(config, userflow_ingress="functionUrl"), USERFLOW,
                             "functionUrl"))
    requests = 1e6 / USERFLOW.events_per_request
    assert api["API Gateway"] == pytest.approx(requests * API_PER_MILLION / 1e6) == 1.00
    assert url["API Gateway"] == 0.0
    saved_log_dollars = requests * access_log_bytes() / 1e9 * LOGS_PER_GB
    assert access_log_bytes() > 100
    assert api["CloudWatch Logs"] - url["CloudWatch Logs"] == pytest.approx(saved_log_dollars)
    unchanged = set(api) - {"API Gateway", "CloudWatch Logs"}
    assert unchanged and all(api[item] == url[item] for item in unchanged)
    assert sum(api.values()) - sum(url.values()) == pytest.approx(1.00 + saved_log_dollars)


def test_the_rendered_lines_show_the_function_url_arithmetic() -> None:
    config = replace(stack_config("production"), userflow_ingress="functionUrl")
    first, *lines = render("Userflow→Segment", config, USERFLOW, "≤ $1.30", "functionUrl")
    total = sum(line.dollars for line in cost_lines(config, USERFLOW, "functionUrl"))
    assert first == f"Userflow→Segment: ${total:.2f} per million events (goal ≤ $1.30)"
    api = next(line for line in lines if line.lstrip().startswith("API Gateway"))
    assert "$ 0.000" in api and "0 requests x $1.0/M" in api and "1,000,000" in api
    logs = next(line for line in lines if "CloudWatch Logs" in line)
    assert "1,000,000 x 700 B (no access log line)" in logs


def test_without_the_api_the_ingest_reservation_bounds_userflow() -> None:
    config = stack_config("production")
    behind_api = capacity(config, USERFLOW)
    assert behind_api.limit() == ("API throttle", config.api_throttle_rate_limit)
    via_url = capacity(config, USERFLOW, "functionUrl")
    assert via_url.api == math.inf
    assert via_url.ingest == behind_api.ingest and via_url.limit()[0] != "API throttle"
    text = render_capacity("Userflow→Segment", config, USERFLOW, "functionUrl")
    assert "API none (function URL: no throttle)" in text
    assert f"({config.ingest_reserved_concurrency} slots)" in text


def test_the_bench_prints_production_through_the_function_url() -> None:
    production = stack_config("production")
    lines = function_url_option("production", production, USERFLOW)
    assert lines[0].startswith("Stack production with userflowIngress: functionUrl")
    via_url = replace(production, userflow_ingress="functionUrl")
    assert lines[1:-2] == render("Userflow→Segment", via_url, USERFLOW, "≤ $1.30",
                                 "functionUrl")
    assert "API none (function URL: no throttle)" in lines[-2] and lines[-1] == ""
    behind_api = render("Userflow→Segment", production, USERFLOW, "≤ $1.30")[0]
    assert lines[1] != behind_api  # the option is priced, not the stack file's door
