"""The cost model's ledger line (bench/cost_model.py): priced as the stack bills the table,
from the writes per event the bench measured, with the arithmetic shown."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest

from bench.cost_model import (
    DYNAMODB_RCU_HOUR,
    DYNAMODB_WCU_HOUR,
    DYNAMODB_WRITE_PER_MILLION,
    HOURS_PER_MONTH,
    PRICE_SOURCES,
    Measured,
    capacity,
    cost_lines,
    render,
    render_provisioned,
    stack_config,
    with_provisioned_ledger,
)
from components.config import StackConfig


def measured(writes_per_event: float) -> Measured:
    return Measured(
        events_per_request=100, ingest_cpu_per_request_s=0.03, delivery_cpu_per_event_s=0.002,
        message_bytes_per_event=300.0, events_per_message=100.0, log_bytes_per_request=900.0,
        log_bytes_per_delivery_invocation=700.0, ingest_aws_calls_per_request=3.0,
        delivery_aws_calls_per_event=1.0, upstream_calls_per_event=1.0,
        ledger_writes_per_event=writes_per_event)


def ledger(config: StackConfig, m: Measured) -> float:
    (line,) = [line for line in cost_lines(config, m) if line.item == "DynamoDB ledger"]
    return line.dollars


def provisioned(stack: str, target: int | None = None, min_write: int | None = None,
                min_read: int | None = None, max_write: int | None = None) -> StackConfig:
    """The stack with a provisioned ledger, some of its keys changed."""
    config = with_provisioned_ledger(stack_config(stack))
    c = config.ledger_capacity
    return replace(config, ledger_capacity=replace(
        c, target_utilization=target or c.target_utilization,
        min_write=min_write or c.min_write, min_read=min_read or c.min_read,
        max_write=max_write or c.max_write))


def headline_total(lines: list[str]) -> float:
    match = re.search(r"\$(\d+\.\d+) per million events", lines[0])
    assert match, lines[0]
    return float(match.group(1))


@pytest.mark.parametrize("writes", [1.0, 1.02, 2.02])
def test_on_demand_pays_a_request_unit_per_measured_write(writes: float) -> None:
    config = stack_config("production")
    assert not config.ledger_capacity.provisioned  # the default
    assert ledger(config, measured(writes)) == pytest.approx(writes * DYNAMODB_WRITE_PER_MILLION)


@pytest.mark.parametrize(("writes", "target"), [(1.0, 70), (1.02, 70), (2.02, 50), (1.0, 90)])
def test_provisioned_pays_capacity_hours_at_the_target_utilisation(
    writes: float, target: int
) -> None:
    config = provisioned("production", target=target)
    expected = 1e6 * writes * DYNAMODB_WCU_HOUR / (3600 * target / 100)
    assert ledger(config, measured(writes)) == pytest.approx(expected)
    # One write per event at 70%: about $0.26 per million, against $0.625 on demand.
    assert ledger(provisioned("production"), measured(1.0)) == pytest.approx(0.258, abs=5e-4)


def test_the_minimum_is_stated_apart_monthly_and_not_in_the_per_event_total() -> None:
    m = measured(1.0)
    config = provisioned("staging", min_write=8, min_read=3)
    lines = render("Segment→Userflow", config, m, "≤ $0.50")
    monthly = (8 * DYNAMODB_WCU_HOUR + 3 * DYNAMODB_RCU_HOUR) * HOURS_PER_MONTH
    (minimum,) = [line for line in lines if "minimum capacity" in line]
    assert f"${monthly:.2f} per month" in minimum
    assert "(8 WCU x $0.00065 + 3 RCU x $0.00013) x 730 h" in minimum
    # The headline is per event only: the sum of the itemised lines.
    assert headline_total(lines) == pytest.approx(
        sum(line.dollars for line in cost_lines(config, m)), abs=0.005)
    # No ledger writes (Userflow→Segment), or on demand: no minimum to state.
    assert not [line for line in render("x", config, measured(0.0), "") if "minimum" in line]
    on_demand = render("x", stack_config("staging"), m, "")
    assert not [line for line in on_demand if "minimum" in line]


def test_the_provisioned_variant_changes_only_the_ledger() -> None:
    m = measured(1.02)
    config = stack_config("production")
    lines = render_provisioned(config, m)
    assert "production with ledgerCapacity: provisioned" in lines[0]
    on_demand = {line.item: line.dollars for line in cost_lines(config, m)}
    variant = {line.item: line.dollars for line in cost_lines(with_provisioned_ledger(config), m)}
    assert {k for k in on_demand if on_demand[k] != variant[k]} == {"DynamoDB ledger"}
    assert variant["DynamoDB ledger"] < on_demand["DynamoDB ledger"]
    assert headline_total(lines) == pytest.approx(sum(variant.values()), abs=0.005)
    assert "https://aws.amazon.com/dynamodb/pricing/provisioned/" in PRICE_SOURCES


def test_a_provisioned_ledger_caps_the_sustained_rate_at_its_maximum_write_capacity() -> None:
    m = measured(2.0)
    # On demand the ledger is no stage of its own.
    assert math.isinf(capacity(stack_config("production"), m).ledger)
    capped = capacity(provisioned("production", max_write=150), m)
    assert capped.ledger == pytest.approx(75.0)  # 150 writes/s over 2 writes per event
    assert capped.limit() == ("ledger maximum write capacity", capped.ledger)
    line = render_provisioned(stack_config("production"), m)[-1]
    assert "ledger 500/s (1000 WCU / 2.00 writes/event)" in line
