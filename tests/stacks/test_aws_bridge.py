"""`AwsBridge` composes the five AWS parts, and stacks deployed before it existed (the parts at
the stack's root) update in place: every former URN is still claimed by one resource, through
its own URN or an alias, so the engine replaces nothing; what is new is only created."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.stacks.conftest import RunStack, succeeded
from tests.stacks.graph import Run, alias_urns, engine_urn, resources, urn
from tests.stacks.test_stack_programs import AWS_STACKS

ROOT_LEVEL = json.loads((Path(__file__).parent / "root_level_urns.json").read_text())["urns"]
AWS_BRIDGE = "userflow-segment:index:AwsBridge"
PARTS = {
    "secrets": "userflow-segment:index:BridgeSecrets",
    "queue": "userflow-segment:index:BridgeQueue",
    "functions": "userflow-segment:index:BridgeFunctions",
    "api": "userflow-segment:index:BridgeApi",
    "alarms": "userflow-segment:index:BridgeAlarms",
}
# Resources added after the parts moved under AwsBridge: new in every stack, by design.


def former_urns(run: Run) -> list[str]:
    prefix = urn(run, "", "").removesuffix("::")
    return [prefix + former for former in ROOT_LEVEL]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_resource_of_a_root_level_stack_is_claimed_once(
    stack: str, run_stack: RunStack
) -> None:
    run = succeeded(run_stack(stack))
    claims: dict[str, list[str]] = {}
    for resource in resources(run):
        for known in {engine_urn(run, resource)} | alias_urns(run, resource):
            claims.setdefault(known, []).append(resource["name"])
    for former in former_urns(run):
        # Unclaimed: the engine would delete it and create its successor (a replace).
        assert len(claims.get(former, [])) == 1, (former, claims.get(former))


# What a root-level stack gains on upgrade, by logical name: the bridge component, and the
# replay ledger (a component and its table, which did not exist before).
NEW_ON_UPGRADE = {
    "bridge": AWS_BRIDGE,
    "ledger": "userflow-segment:index:BridgeLedger",
    "ledger-table": "aws:dynamodb/table:Table",
    "alarms-queue-age": "aws:cloudwatch/metricAlarm:MetricAlarm",
    "dashboard": "userflow-segment:index:BridgeDashboard",
    "dashboard-board": "aws:cloudwatch/dashboard:Dashboard",
}


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_only_the_bridge_component_and_the_ledger_are_new(
    stack: str, run_stack: RunStack
) -> None:
    run = succeeded(run_stack(stack))
    formers = set(former_urns(run))
    new = {r["name"]: r["type"] for r in resources(run)
           if not ({engine_urn(run, r)} | alias_urns(run, r)) & formers}
    assert new == NEW_ON_UPGRADE
    (bridge,) = resources(run, AWS_BRIDGE)
    assert bridge["parent"].split("::")[2] == "pulumi:pulumi:Stack" and not bridge["custom"]
    (ledger,) = resources(run, NEW_ON_UPGRADE["ledger"])
    assert ledger["parent"] == bridge["urn"] and ledger["aliases"] == []


def test_the_five_parts_are_children_of_the_bridge_under_their_old_names(
    run_stack: RunStack,
) -> None:
    run = succeeded(run_stack("staging"))
    (bridge,) = resources(run, AWS_BRIDGE)
    for name, typ in PARTS.items():
        (part,) = resources(run, typ)
        assert (part["name"], part["parent"]) == (name, bridge["urn"])
        assert alias_urns(run, part) == {urn(run, typ, name)}


def test_the_local_stack_has_no_bridge_component(run_stack: RunStack) -> None:
    run = succeeded(run_stack("local", bridgeUrl="http://127.0.0.1:9876"))
    assert resources(run, AWS_BRIDGE) == []
