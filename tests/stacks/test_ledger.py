"""The replay ledger's table under Pulumi mocks: declared as the bridge's code expects it
(bridge_code/ledger.py: key `pk`, TTL attribute `expires_at`, `accepted#`/`delivered#` items),
named after the stack, found by both functions through their environment, reachable only
through each function's own key prefix, and protected in production."""

from __future__ import annotations

from typing import Any

import pytest

from components.aws.functions import env_flag
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
