"""The ledger's two halves agree: the calls bridge_code/ledger.py makes are the ones the AWS
program grants (components/aws/ledger.py), on the key prefixes the grants allow.

The two modules cannot import each other (the Lambda zip never holds `components/`), so the
contract is written twice and held together here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from bridge_code import ledger as bridge_ledger
from components.aws import ledger as aws_ledger


class ConditionFailed(Exception):
    """What botocore raises when a conditional write's condition does not hold."""

    def __init__(self) -> None:
        super().__init__("condition failed")
        self.response = {"Error": {"Code": "ConditionalCheckFailedException"}}


class RecordingDynamo:
    """A DynamoDB client double that records (action, partition key) for every call."""

    def __init__(self, fail_conditions: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.items: list[dict[str, Any]] = []
        self.fail_conditions = fail_conditions

    def _record(self, method: str, key: dict[str, Any]) -> None:
        action = "dynamodb:" + "".join(part.capitalize() for part in method.split("_"))
        self.calls.append((action, key["pk"]["S"]))

    def put_item(self, **kwargs: Any) -> dict[str, Any]:
        self._record("put_item", kwargs["Item"])
        self.items.append(kwargs["Item"])
        if self.fail_conditions and "ConditionExpression" in kwargs:
            raise ConditionFailed()
        return {}

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        self._record("get_item", kwargs["Key"])
        # A claim pending under a holder, and that holder's settlement: both lookups happen.
        return {"Item": {"state": {"S": "pending"}, "token": {"S": "h-0"},
                         "expires_at": {"N": "9999999999"}}}

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        self._record("update_item", kwargs["Key"])
        return {}

    def delete_item(self, **kwargs: Any) -> dict[str, Any]:
        self._record("delete_item", kwargs["Key"])
        return {}


def exercise(kind: str, client: RecordingDynamo) -> None:
    """Every path of the ledger for one kind: claim, complete, release, a repeat's claim; for
    settlements, settling a holder and finding a pending claim's holder settled."""
    ledger = bridge_ledger.DynamoLedger(lambda: client, "table")
    if kind == bridge_ledger.SETTLED:
        ledger.settle("h-1", 3600)
        repeat = RecordingDynamo(fail_conditions=True)
        claimed = bridge_ledger.DynamoLedger(lambda: repeat, "table").claim(
            bridge_ledger.DELIVERED, "m-1", 60, 3600, holder="h-2")
        assert claimed.state == "done"
        client.calls.extend(c for c in repeat.calls if c[1].startswith(f"{kind}#"))
        client.items.extend(i for i in repeat.items if i["pk"]["S"].startswith(f"{kind}#"))
        return
    claim = ledger.claim(kind, "m-1", 60, 3600)
    ledger.complete(claim, 3600)
    ledger.release(ledger.claim(kind, "m-2", 60, 3600))
    if kind == bridge_ledger.DELIVERED:  # only delivery ever marks a claim uncertain
        ledger.release(ledger.claim(kind, "m-3", 60, 3600), uncertain=True)
    repeat = RecordingDynamo(fail_conditions=True)
    bridge_ledger.DynamoLedger(lambda: repeat, "table").claim(kind, "m-1", 60, 3600)
    client.calls.extend(repeat.calls)
    client.items.extend(repeat.items)


def test_both_halves_name_the_same_kinds() -> None:
    assert (bridge_ledger.ACCEPTED, bridge_ledger.DELIVERED, bridge_ledger.SETTLED) == (
        aws_ledger.ACCEPTED_KIND, aws_ledger.DELIVERED_KIND, aws_ledger.SETTLED_KIND)
    assert set(aws_ledger.LEDGER_ACTIONS) == {
        bridge_ledger.ACCEPTED, bridge_ledger.DELIVERED, bridge_ledger.SETTLED}


@pytest.mark.parametrize("kind", [bridge_ledger.ACCEPTED, bridge_ledger.DELIVERED,
                                  bridge_ledger.SETTLED])
def test_every_call_is_granted_on_its_own_prefix(kind: str) -> None:
    # GIVEN the ledger driven through each of its paths for one kind of item
    client = RecordingDynamo()
    exercise(kind, client)
    # THEN every call is an action the AWS program grants that kind's writer
    granted = set(aws_ledger.LEDGER_ACTIONS[kind])
    assert {action for action, _ in client.calls} <= granted
    # AND every key it touches matches the LeadingKeys pattern of that grant
    statement = aws_ledger.ledger_statement("arn:aws:dynamodb:eu-central-1:1:table/t", kind)
    (pattern,) = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    allowed = re.compile(re.escape(pattern).replace(r"\*", ".*") + r"\Z")
    assert all(allowed.match(pk) for _, pk in client.calls)


def test_delivery_needs_every_granted_action_and_ingest_no_more_than_it_has() -> None:
    # A grant nobody uses is privilege to spare: each granted action is one the kind's paths use.
    for kind in aws_ledger.LEDGER_ACTIONS:
        client = RecordingDynamo()
        exercise(kind, client)
        assert {action for action, _ in client.calls} == set(aws_ledger.LEDGER_ACTIONS[kind])


def test_items_carry_the_key_and_ttl_attribute_the_table_declares() -> None:
    client = RecordingDynamo()
    exercise(bridge_ledger.ACCEPTED, client)
    for item in client.items:
        assert aws_ledger.PARTITION_KEY in item and aws_ledger.TTL_ATTRIBUTE in item
