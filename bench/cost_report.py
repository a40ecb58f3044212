"""The bench's cost section: the cost model (bench/cost_model.py) fed with what the bench
measured in its CPU runs, per stack, then the opt-in variants (a provisioned ledger, the
function URL front door), each line with its arithmetic."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.cost_model import (
    Measured,
    access_log_bytes,
    describe_inputs,
    function_url_option,
    platform_log_bytes,
    price_note,
    render,
    render_capacity,
    render_provisioned,
)
from components.config import StackConfig

if TYPE_CHECKING:
    from bench.bridge_bench import CpuRun


def _measured(run: CpuRun, events_per_request: int, ledger_writes: float,
              ingest_aws_calls: float, delivery_aws_calls: float,
              upstream_batched: bool = False) -> Measured:
    return Measured(
        events_per_request=events_per_request,
        ingest_cpu_per_request_s=run.ingest_cpu_per_request,
        delivery_cpu_per_event_s=run.delivery_cpu_per_event,
        message_bytes_per_event=run.message_bytes_per_event,
        events_per_message=run.events_per_message,
        log_bytes_per_request=(run.ingest_log_bytes_per_request + access_log_bytes()
                               + platform_log_bytes()),
        log_bytes_per_delivery_invocation=(run.delivery_log_bytes_per_invocation
                                           + platform_log_bytes()),
        ingest_aws_calls_per_request=ingest_aws_calls,
        delivery_aws_calls_per_event=delivery_aws_calls,
        upstream_calls_per_event=1.0,
        ledger_writes_per_event=ledger_writes,
        upstream_batched=upstream_batched)


def print_costs(staging: StackConfig, production: StackConfig, runs: dict[str, CpuRun]) -> None:
    segment_measured: dict[str, Measured] = {}
    for stack, config in (("staging", staging), ("production", production)):
        batch = config.segment_batch_size if config.segment_batching else 1
        s2u = runs["s2u"] if batch > 1 else runs["s2u1"]
        # Ledger writes as the code made them in (1): ingest claims and marks accepted once
        # per request, delivery claims once per event and settles once per invocation.
        # Ingest's AWS calls: those two writes and one SendMessageBatch per request; delivery's
        # about one per event (its claim).
        segment = _measured(s2u, batch, s2u.ledger_writes_per_event, 3, 1)
        # Userflow→Segment: one webhook per event, no ledger; delivery's calls are batched.
        userflow = _measured(runs["u2s"], 1, 0.0, 1, 0, upstream_batched=True)
        print(f"Cost per million events, stack {stack} ({describe_inputs(config)}):")
        for line in render("Segment→Userflow", config, segment, "≤ $0.50"):
            print(line)
        for line in render("Userflow→Segment", config, userflow, "≤ $1.30",
                           config.userflow_ingress):
            print(line)
        print("Capacity, events/s sustained:")
        print("  " + render_capacity("Segment→Userflow", config, segment))
        print("  " + render_capacity("Userflow→Segment", config, userflow,
                                     config.userflow_ingress))
        segment_measured[stack] = segment  # priced again below with a provisioned ledger
        print()
    print("\n".join([*render_provisioned(production, segment_measured["production"]), ""]))
    # Production's Userflow→Segment again (the last `userflow`), through the function URL.
    for line in function_url_option("production", production, userflow):
        print(line)
    print(price_note())
