"""The replay ledger's table under Pulumi mocks: declared as the bridge's code expects it
(bridge_code/ledger.py: key `pk`, TTL attribute `expires_at`, `accepted#`/`delivered#` items),
named after the stack, found by both functions through their environment, reachable only
through each function's own key prefix, and protected in production; on demand unless
`ledgerCapacity: provisioned` asks for auto-scaled capacity and its throttling alarm."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.aws.functions import env_flag
from tests.stacks import test_stack_programs as programs
from tests.stacks.conftest import RunStack, succeeded
from tests.stacks.graph import Run, environment, one, policy, resources
from tests.stacks.harness import ACCOUNT, PROJECT
from tests.stacks.test_stack_programs import (
    AWS_STACKS,
    FUNCTION,
    ROLE_POLICY,
    effective,
    env_vars,
)

TABLE = "aws:dynamodb/table:Table"
LEDGER = "userflow-segment:index:BridgeLedger"
# The calls each function makes through bridge_code/ledger.py, spelled out here so that a
# grant widened in the component (another action, a wildcard) fails below instead of being
# compared to itself. Only delivery marks a claim uncertain (UpdateItem), and only delivery
# writes and reads the `settled#` items that complete its claims in bulk.
CLAIM_ACTIONS = ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem"]
# role -> {key prefix its statement is limited to: the actions it grants there}
GRANTS = {"ingest": {"accepted#*": CLAIM_ACTIONS},
          "delivery": {"delivered#*": sorted([*CLAIM_ACTIONS, "dynamodb:UpdateItem"]),
                       "settled#*": ["dynamodb:GetItem", "dynamodb:PutItem"]}}


@pytest.fixture(params=AWS_STACKS)
def aws_run(request: pytest.FixtureRequest, run_stack: RunStack) -> Run:
    return succeeded(run_stack(request.param))


def table(run: Run) -> dict[str, Any]:
    return one(run, TABLE, "ledger-table")


def table_arn(run: Run) -> str:
    name = table(run)["inputs"]["name"]
    return f"arn:aws:dynamodb:{run['config']['aws:region']}:{ACCOUNT}:table/{name}"


def test_the_table_is_on_demand_keyed_by_pk_expiring_encrypted_and_recoverable(
    aws_run: Run,
) -> None:
    declared = table(aws_run)
    inputs = declared["inputs"]
    assert inputs["name"] == f"{PROJECT}-{environment(aws_run)}-ledger"
    assert inputs["billingMode"] == "PAY_PER_REQUEST"
    assert inputs["hashKey"] == "pk" and "rangeKey" not in inputs
    assert inputs["attributes"] == [{"name": "pk", "type": "S"}]
    assert inputs["ttl"] == {"attributeName": "expires_at", "enabled": True}
    # Enabled without a key of ours: the AWS managed key (alias/aws/dynamodb).
    assert inputs["serverSideEncryption"] == {"enabled": True}
    assert inputs["pointInTimeRecovery"] == {"enabled": True}
    (ledger,) = resources(aws_run, LEDGER)
    assert declared["parent"] == ledger["urn"]
    (bridge,) = resources(aws_run, "userflow-segment:index:AwsBridge")
    assert ledger["parent"] == bridge["urn"]


def test_both_functions_find_this_stacks_table_and_ingest_knows_the_batching(
    aws_run: Run,
) -> None:
    ingest, delivery = env_vars(aws_run, "ingest"), env_vars(aws_run, "delivery")
    name = table(aws_run)["inputs"]["name"]
    assert ingest["BRIDGE_LEDGER_TABLE"] == delivery["BRIDGE_LEDGER_TABLE"] == name
    assert aws_run["exports"]["ledgerTableName"] == name
    assert ingest["BRIDGE_SEGMENT_BATCHING"] == env_flag(effective(aws_run).segment_batching)
    # Only ingest decides what a Segment request may be; the window is the bridge's default.
    assert "BRIDGE_SEGMENT_BATCHING" not in delivery
    assert "BRIDGE_ACCEPTANCE_WINDOW_SECONDS" not in ingest


@pytest.mark.parametrize("batching", ["true", "false"])
def test_the_batching_flag_follows_the_stacks_config(batching: str, run_stack: RunStack) -> None:
    run = succeeded(run_stack("staging", segmentBatching=batching))
    assert env_vars(run, "ingest")["BRIDGE_SEGMENT_BATCHING"] == batching


def ledger_statements(run: Run, role: str) -> list[dict[str, Any]]:
    """The role's statements that grant anything in DynamoDB or name the table."""
    document = policy(one(run, ROLE_POLICY, f"functions-{role}-policy"))
    return [s for s in document["Statement"]
            if any(a.lower().startswith("dynamodb:") or a == "*" for a in s["Action"])
            or table_arn(run) in s["Resource"]]


@pytest.mark.parametrize("role", ["ingest", "delivery"])
def test_each_role_reaches_only_its_own_items_of_this_table(aws_run: Run, role: str) -> None:
    granted: dict[str, list[str]] = {}
    for statement in ledger_statements(aws_run, role):
        assert statement["Effect"] == "Allow"
        assert statement["Resource"] == [table_arn(aws_run)]
        assert set(statement) == {"Sid", "Effect", "Action", "Resource", "Condition"}
        (prefix,) = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        assert set(statement["Condition"]) == {"ForAllValues:StringLike"}
        granted[prefix] = sorted(statement["Action"])
    assert granted == GRANTS[role]


def test_the_roles_grant_nothing_else_in_dynamodb_or_kms(aws_run: Run) -> None:
    for role in ("ingest", "delivery"):
        document = policy(one(aws_run, ROLE_POLICY, f"functions-{role}-policy"))
        actions = [a for s in document["Statement"] for a in s["Action"]]
        services = {a.split(":", 1)[0] for a in actions}
        assert "kms" not in services, role  # the AWS managed key needs no grant of ours
        assert len([a for a in actions if a.startswith("dynamodb:")]) == sum(
            len(granted) for granted in GRANTS[role].values())
        # The role is the function's own (the table is read only through it).
        assert one(aws_run, FUNCTION, f"functions-{role}")["inputs"]["role"].endswith(
            f":role/{PROJECT}-{environment(aws_run)}-{role}-role")


def test_productions_table_is_protected_twice_and_stagings_is_not(run_stack: RunStack) -> None:
    production, staging = succeeded(run_stack("production")), succeeded(run_stack("staging"))
    assert table(production)["protect"] and table(production)["inputs"][
        "deletionProtectionEnabled"] is True
    assert not table(staging)["protect"]
    assert table(staging)["inputs"]["deletionProtectionEnabled"] is False
    # Released for destroy by its documented flag, production's table can go like the rest.
    released = succeeded(run_stack("production", allowDestroy="true"))
    assert not table(released)["protect"]
    assert table(released)["inputs"]["deletionProtectionEnabled"] is False


# -- ledgerCapacity: on demand by default, provisioned with auto scaling when asked -----------

TARGET = "aws:appautoscaling/target:Target"
SCALING_POLICY = "aws:appautoscaling/policy:Policy"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "arn:aws:sns:eu-central-1:123456789012:userflow-segment-alarms"
# Every ledger key moved off its default, so each value below can only come from config.
PROVISIONED = {
    "ledgerCapacity": "provisioned", "ledgerMinWriteCapacity": "7",
    "ledgerMaxWriteCapacity": "300", "ledgerMinReadCapacity": "2",
    "ledgerMaxReadCapacity": "40", "ledgerTargetUtilization": "55",
    "alarmLedgerThrottledThreshold": "3", "alarmTopicArn": TOPIC,
}


@pytest.fixture(params=AWS_STACKS)
def provisioned_run(request: pytest.FixtureRequest, run_stack: RunStack) -> Run:
    return succeeded(run_stack(request.param, **PROVISIONED))


def test_by_default_nothing_scales_nothing_is_ignored_and_no_throttling_alarm(
    aws_run: Run,
) -> None:
    declared = table(aws_run)
    assert declared["inputs"]["billingMode"] == "PAY_PER_REQUEST"
    assert "readCapacity" not in declared["inputs"]
    assert "writeCapacity" not in declared["inputs"]
    assert declared["ignore_changes"] == []
    assert resources(aws_run, TARGET) == resources(aws_run, SCALING_POLICY) == []
    assert not [a for a in resources(aws_run, ALARM) if "ledger" in a["name"]]


def test_a_provisioned_table_starts_at_its_minimum_and_leaves_capacity_to_the_scaler(
    provisioned_run: Run,
) -> None:
    inputs = table(provisioned_run)["inputs"]
    assert inputs["billingMode"] == "PROVISIONED"
    assert (inputs["readCapacity"], inputs["writeCapacity"]) == (2, 7)
    # A later `pulumi up` must not set back what the scaler changed.
    assert sorted(table(provisioned_run)["ignore_changes"]) == ["readCapacity", "writeCapacity"]
    # Everything else about the table is as on demand.
    assert inputs["ttl"] == {"attributeName": "expires_at", "enabled": True}
    assert inputs["pointInTimeRecovery"] == {"enabled": True}


def test_each_capacity_has_a_target_tracking_scaler_within_the_configured_bounds(
    provisioned_run: Run,
) -> None:
    (ledger,) = resources(provisioned_run, LEDGER)
    resource_id = f"table/{table(provisioned_run)['inputs']['name']}"
    bounds = {"write": (7, 300, "WriteCapacityUnits", "DynamoDBWriteCapacityUtilization"),
              "read": (2, 40, "ReadCapacityUnits", "DynamoDBReadCapacityUtilization")}
    for kind, (low, high, units, metric) in bounds.items():
        target = one(provisioned_run, TARGET, f"ledger-{kind}-target")
        assert target["parent"] == ledger["urn"]
        assert target["inputs"] == {
            "serviceNamespace": "dynamodb", "scalableDimension": f"dynamodb:table:{units}",
            "resourceId": resource_id, "minCapacity": low, "maxCapacity": high}
        scaling = one(provisioned_run, SCALING_POLICY, f"ledger-{kind}-policy")
        assert scaling["parent"] == ledger["urn"]
        assert scaling["inputs"]["policyType"] == "TargetTrackingScaling"
        assert (scaling["inputs"]["resourceId"], scaling["inputs"]["scalableDimension"]) == (
            resource_id, f"dynamodb:table:{units}")
        assert scaling["inputs"]["targetTrackingScalingPolicyConfiguration"] == {
            "targetValue": 55, "predefinedMetricSpecification": {"predefinedMetricType": metric}}
        assert scaling["inputs"]["name"] == (
            f"{PROJECT}-{environment(provisioned_run)}-ledger-{kind}-utilization")


def test_a_provisioned_table_alarms_on_throttling_to_the_stacks_topic(
    provisioned_run: Run,
) -> None:
    alarm = one(provisioned_run, ALARM, "alarms-ledger-throttled")
    inputs = alarm["inputs"]
    assert inputs["name"] == f"{PROJECT}-{environment(provisioned_run)}-ledger-throttled"
    assert inputs["alarmActions"] == inputs["okActions"] == [TOPIC]
    assert inputs["threshold"] == 3
    assert inputs["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert inputs["treatMissingData"] == "notBreaching"
    queries = {q["id"]: q for q in inputs["metricQueries"]}
    assert [q["id"] for q in inputs["metricQueries"] if q.get("returnData")] == ["throttled"]
    # Either kind refused counts; a period with none of one kind is published as no data.
    assert queries["throttled"]["expression"] == "FILL(writes, 0) + FILL(reads, 0)"
    name = table(provisioned_run)["inputs"]["name"]
    for query_id, metric in (("writes", "WriteThrottleEvents"), ("reads", "ReadThrottleEvents")):
        watched = queries[query_id]["metric"]
        assert (watched["namespace"], watched["metricName"], watched["stat"]) == (
            "AWS/DynamoDB", metric, "Sum")
        assert watched["dimensions"] == {"TableName": name}
        assert watched["period"] == effective(provisioned_run).alarm_period_seconds
    # Shown on the dashboard with the others.
    body = json.loads(one(provisioned_run, "aws:cloudwatch/dashboard:Dashboard",
                          "dashboard-board")["inputs"]["dashboardBody"])
    (widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert any(arn.endswith(f":{inputs['name']}") for arn in widget["properties"]["alarms"])


def test_switching_to_provisioned_keeps_every_urn_and_back_deletes_nothing_protected(
    run_stack: RunStack,
) -> None:
    on_demand = succeeded(run_stack("production"))
    provisioned = succeeded(run_stack("production", **PROVISIONED))
    before = {r["urn"] for r in resources(on_demand)}
    after = {r["urn"]: r for r in resources(provisioned)}
    # Nothing replaced or deleted: only the scaler and its alarm are new.
    assert before <= set(after)
    assert sorted(after[u]["name"] for u in set(after) - before) == [
        "alarms-ledger-throttled", "ledger-read-policy", "ledger-read-target",
        "ledger-write-policy", "ledger-write-target"]
    # Protected like the rest, but for what going back to on demand deletes: a protected
    # resource would make that `pulumi up` fail, and these hold no data.
    switchable = {u for u, r in after.items() if r["name"] in {
        "alarms-ledger-throttled", "ledger-read-policy", "ledger-read-target",
        "ledger-write-policy", "ledger-write-target"}}
    assert switchable == set(after) - before
    assert [r["name"] for u, r in after.items() if r["protect"] == (u in switchable)] == []
    # The new types are named after the environment like every other.
    programs.test_every_physical_name_carries_the_environment(provisioned)
