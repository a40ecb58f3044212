"""Same code, separate stacks: staging and production build the same graph (types and
logical names), and every input that differs is explained by a config key that differs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from components.aws.functions import env_flag
from components.aws.queue import visibility_timeout_seconds
from components.config import StackConfig
from tests.stacks.conftest import RunStack, succeeded
from tests.stacks.graph import Run, environment, inputs, resources
from tests.stacks.test_stack_programs import effective

Path = tuple[str, ...]
# (type, logical name or "*", input path) -> the config value that input must carry.
EXPLAINED: dict[tuple[str, str, Path], Callable[[StackConfig], Any]] = {
    ("aws:cloudwatch/logGroup:LogGroup", "*", ("retentionInDays",)):
        lambda c: c.log_retention_days,
    ("aws:apigatewayv2/stage:Stage", "*", ("defaultRouteSettings", "throttlingBurstLimit")):
        lambda c: c.api_throttle_burst_limit,
    ("aws:apigatewayv2/stage:Stage", "*", ("defaultRouteSettings", "throttlingRateLimit")):
        lambda c: c.api_throttle_rate_limit,
    ("aws:lambda/function:Function", "functions-ingest", ("reservedConcurrentExecutions",)):
        lambda c: c.ingest_reserved_concurrency,
    ("aws:lambda/function:Function", "functions-delivery", ("reservedConcurrentExecutions",)):
        lambda c: c.delivery_reserved_concurrency,
    ("aws:lambda/function:Function", "functions-ingest",
     ("environment", "variables", "BRIDGE_SEGMENT_BATCHING")):
        lambda c: env_flag(c.segment_batching),
    ("aws:lambda/function:Function", "functions-ingest", ("timeout",)):
        lambda c: c.ingest_timeout_seconds,
    ("aws:lambda/function:Function", "functions-delivery", ("timeout",)):
        lambda c: c.delivery_timeout_seconds,
    ("aws:sqs/queue:Queue", "queue-work", ("visibilityTimeoutSeconds",)):
        lambda c: visibility_timeout_seconds(c.delivery_timeout_seconds),
    ("aws:lambda/eventSourceMapping:EventSourceMapping", "*", ("batchSize",)):
        lambda c: c.delivery_batch_size,
    ("aws:lambda/eventSourceMapping:EventSourceMapping", "*",
     ("maximumBatchingWindowInSeconds",)): lambda c: c.delivery_batch_window_seconds,
    ("aws:lambda/eventSourceMapping:EventSourceMapping", "*",
     ("scalingConfig", "maximumConcurrency")): lambda c: c.delivery_reserved_concurrency,
    ("aws:dynamodb/table:Table", "ledger-table", ("deletionProtectionEnabled",)):
        lambda c: c.protect,
    ("aws:secretsmanager/secret:Secret", "*", ("recoveryWindowInDays",)):
        lambda c: c.secret_recovery_window_days,
    ("aws:cloudwatch/metricAlarm:MetricAlarm", "alarms-dead-letter", ("threshold",)):
        lambda c: c.alarm_dead_letter_threshold,
    ("aws:cloudwatch/metricAlarm:MetricAlarm", "alarms-delivery-errors", ("threshold",)):
        lambda c: c.alarm_delivery_errors_threshold,
    ("aws:cloudwatch/metricAlarm:MetricAlarm", "alarms-api-5xx-rate", ("threshold",)):
        lambda c: c.alarm_api_5xx_rate_percent,
    ("pulumi-python:dynamic/segment:WebhookDestination", "*", ("batching",)):
        lambda c: c.segment_batching,
    ("pulumi-python:dynamic/segment:WebhookDestination", "*", ("batch_size",)):
        lambda c: c.segment_batch_size,
}


def flatten(node: Any, path: Path = ()) -> dict[Path, Any]:
    if isinstance(node, dict):
        flat: dict[Path, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, (*path, key)))
        return flat
    if isinstance(node, list):
        flat = {}
        for index, value in enumerate(node):
            flat.update(flatten(value, (*path, str(index))))
        return flat
    return {path: node}


def normalized(run: Run) -> dict[tuple[str, str, str], dict[Path, Any]]:
    """Resources keyed by (type, logical name, parent URN's tail), inputs flattened, with the
    environment's name (which physical names carry by design) replaced by a placeholder."""
    env = environment(run)

    def scrub(value: Any) -> Any:
        return value.replace(env, "<env>") if isinstance(value, str) else value

    graph: dict[tuple[str, str, str], dict[Path, Any]] = {}
    for resource in resources(run):
        # The parent's type chain and name (the root stack's name is `<project>-<stack>`).
        parent = resource["parent"].split("::", 2)[-1]
        key = (resource["type"], resource["name"], scrub(parent))
        assert key not in graph, key
        graph[key] = {path: scrub(v) for path, v in flatten(inputs(resource)).items()}
    return graph


def explanation(typ: str, name: str, path: Path) -> Callable[[StackConfig], Any] | None:
    return EXPLAINED.get((typ, name, path)) or EXPLAINED.get((typ, "*", path))


def test_staging_and_production_have_the_same_types_and_logical_names(
    run_stack: RunStack,
) -> None:
    staging = normalized(succeeded(run_stack("staging")))
    production = normalized(succeeded(run_stack("production")))
    assert sorted(staging) == sorted(production)
    assert len(staging) > 30


def test_inputs_differ_only_where_config_says(run_stack: RunStack) -> None:
    staging_run, production_run = succeeded(run_stack("staging")), succeeded(
        run_stack("production"))
    staging, production = normalized(staging_run), normalized(production_run)
    staging_config, production_config = effective(staging_run), effective(production_run)
    differences = []
    for key, staging_inputs in staging.items():
        production_inputs = production[key]
        for path in sorted(set(staging_inputs) | set(production_inputs)):
            before, after = staging_inputs.get(path), production_inputs.get(path)
            if before == after:
                continue
            explain = explanation(key[0], key[1], path)
            assert explain is not None, f"unexplained difference {key} {path}: {before} / {after}"
            assert before == explain(staging_config), (key, path)
            assert after == explain(production_config), (key, path)
            differences.append((key, path))
    # The stack files differ on purpose, so a graph with no difference would mean config is
    # not reaching the resources.
    assert len(differences) >= 10
