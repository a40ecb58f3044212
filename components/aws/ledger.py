"""The bridge's replay ledger: one DynamoDB table per stack, and what each function may do in it.

Segment's signature has no timestamp and nothing in its scheme remembers what was accepted, and
Userflow's `POST /events` has no idempotency key. So the bridge keeps a record per Segment
`messageId`: ingest writes `accepted#<messageId>` items (a captured request sent again is
skipped), delivery writes `delivered#<key>` items (no second Userflow call for one event) and
one `settled#<invocation>` item per invocation (its claims are complete). The
bridge's code owns the items (`bridge_code/ledger.py`); this module owns the table and the
access to it.

Access is scoped twice: to this table's ARN, and by partition-key prefix with the
`dynamodb:LeadingKeys` condition, which DynamoDB evaluates on GetItem, PutItem, UpdateItem and
DeleteItem (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/specifying-conditions.html).
So ingest cannot forge or erase a delivery record, nor delivery an acceptance.

Billing: on demand by default. `ledgerCapacity: provisioned` makes the table provisioned at
its minimum capacity, with Application Auto Scaling keeping each of read and write capacity
near `ledgerTargetUtilization` between its minimum and maximum; the scaler, not `pulumi up`,
owns the capacity from then on (docs/operations.md, "The ledger's capacity").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
from pulumi_aws.appautoscaling import (
    PolicyTargetTrackingScalingPolicyConfigurationArgs as TrackingArgs,
)
from pulumi_aws.appautoscaling import (
    PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs as MetricArgs,
)

from components.ledger_capacity import LedgerCapacity
from components.project import component_type

# The table's contract with bridge_code/ledger.py: its key, its TTL attribute, the three key
# kinds ("<kind>#<key>"), and the calls each writer makes. A claim is a conditional PutItem (a
# consistent GetItem when the condition fails), completing it a PutItem, releasing it a
# DeleteItem; only delivery marks a claim `uncertain` (an UpdateItem), when Userflow may have
# acted on a call whose answer was lost. Delivery settles an invocation's claims with one
# PutItem of a `settled#` item, and reads one (GetItem) when it meets an older claim.
PARTITION_KEY = "pk"
TTL_ATTRIBUTE = "expires_at"
ACCEPTED_KIND = "accepted"
DELIVERED_KIND = "delivered"
SETTLED_KIND = "settled"
_CLAIM_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem")
LEDGER_ACTIONS: dict[str, tuple[str, ...]] = {
    ACCEPTED_KIND: _CLAIM_ACTIONS,
    DELIVERED_KIND: (*_CLAIM_ACTIONS, "dynamodb:UpdateItem"),
    SETTLED_KIND: ("dynamodb:GetItem", "dynamodb:PutItem"),
}


@dataclass(frozen=True)
class BridgeLedgerArgs:
    """What the ledger component needs."""

    name_prefix: str
    """Prefix of every physical name (carries the environment)."""
    deletion_protection: bool
    """Whether DynamoDB itself refuses to delete the table (the stack's `protect`)."""
    capacity: LedgerCapacity
    """On demand, or provisioned with the scaler's bounds."""


# What Application Auto Scaling calls the table's two capacities, and the metric each
# target-tracking policy follows (consumed ÷ provisioned, in percent).
SCALABLE_DIMENSIONS = {
    "write": ("dynamodb:table:WriteCapacityUnits", "DynamoDBWriteCapacityUtilization"),
    "read": ("dynamodb:table:ReadCapacityUnits", "DynamoDBReadCapacityUtilization"),
}
# The scaler changes these on the live table; a later `pulumi up` must not set them back.
SCALED_PROPERTIES = ["read_capacity", "write_capacity"]
# What exists only while `ledgerCapacity: provisioned` (the scaler here, the throttling alarm
# in alarms.py) is never protected, whatever the stack's `protect`: going back to on demand
# deletes it, and a protected resource would make that `pulumi up` fail. It holds no data.
SWITCHABLE = pulumi.ResourceOptions(protect=False)


def ledger_statement(table_arn: pulumi.Input[str], kind: str) -> dict[str, Any]:
    """Make the calls the writer of one kind of item makes, on those items only.

    `ForAllValues` holds for every partition key a request names, and each of these calls
    names exactly one. Should the bridge ever make another call, it is refused and reported
    as `ledger unavailable` (a claim then lapses after its hold): nothing is lost.
    """
    return {
        "Sid": f"Ledger{kind.capitalize()}Items",
        "Effect": "Allow",
        "Action": list(LEDGER_ACTIONS[kind]),
        "Resource": [table_arn],
        "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{kind}#*"]}},
    }


class BridgeLedger(pulumi.ComponentResource):
    """The ledger table: on demand or auto-scaled, items expiring by TTL, encrypted,
    recoverable."""

    table_name: pulumi.Output[str]
    table_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: BridgeLedgerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(component_type("BridgeLedger"), name, None, opts)
        capacity = args.capacity
        billing: dict[str, Any] = {
            # Traffic follows Segment's and Userflow's, bursty and often idle: pay per request.
            "billing_mode": "PAY_PER_REQUEST",
            "opts": pulumi.ResourceOptions(parent=self),
        }
        if capacity.provisioned:
            # Created at the scaler's minimum; from then on the scaler sets the capacity.
            # An on-demand table switched over is sent no capacity (ignored, absent from the
            # old inputs): the AWS provider then asks for 1 unit each and registering the
            # scalable target raises the table to its minimum.
            billing = {
                "billing_mode": "PROVISIONED",
                "read_capacity": capacity.min_read,
                "write_capacity": capacity.min_write,
                "opts": pulumi.ResourceOptions(parent=self, ignore_changes=SCALED_PROPERTIES),
            }
        table = aws.dynamodb.Table(
            f"{name}-table",
            name=f"{args.name_prefix}-ledger",
            hash_key=PARTITION_KEY,
            attributes=[aws.dynamodb.TableAttributeArgs(name=PARTITION_KEY, type="S")],
            # The bridge sets each item's expiry; DynamoDB deletes expired items for free
            # (within days, so the bridge also checks expiry itself).
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=TTL_ATTRIBUTE, enabled=True),
            # The AWS managed key (alias/aws/dynamodb): its use is logged in CloudTrail, there
            # is no key policy to keep and no monthly key fee, and the functions need no KMS
            # permission. A customer managed key would add $1 a month and a policy for data
            # that is message ids and timestamps.
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
            # Priced by table size (a few GB at a million events a day, see the README), and
            # a deleted table leaves a 35-day system backup.
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            # Pulumi's `protect` stops `pulumi destroy`; this also stops the console and CLI.
            deletion_protection_enabled=args.deletion_protection,
            **billing,
        )
        self.table_name = table.name
        self.table_arn = table.arn
        if capacity.provisioned:
            self._scale(name, args.name_prefix, capacity)
        self.register_outputs({"table_name": self.table_name, "table_arn": self.table_arn})

    def _scale(self, name: str, name_prefix: str, capacity: LedgerCapacity) -> None:
        """A scalable target and a target-tracking policy for each of the two capacities.

        No role is named: Application Auto Scaling uses its service-linked role for DynamoDB
        (AWSServiceRoleForApplicationAutoScaling_DynamoDBTable), created on first use.
        """
        bounds = {"write": (capacity.min_write, capacity.max_write),
                  "read": (capacity.min_read, capacity.max_read)}
        child = pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), SWITCHABLE)
        for kind, (dimension, metric) in SCALABLE_DIMENSIONS.items():
            low, high = bounds[kind]
            target = aws.appautoscaling.Target(
                f"{name}-{kind}-target",
                service_namespace="dynamodb",
                scalable_dimension=dimension,
                resource_id=self.table_name.apply(lambda table: f"table/{table}"),
                min_capacity=low,
                max_capacity=high,
                opts=child,
            )
            aws.appautoscaling.Policy(
                f"{name}-{kind}-policy",
                name=f"{name_prefix}-ledger-{kind}-utilization",
                policy_type="TargetTrackingScaling",
                service_namespace=target.service_namespace,
                scalable_dimension=target.scalable_dimension,
                resource_id=target.resource_id,
                target_tracking_scaling_policy_configuration=TrackingArgs(
                    predefined_metric_specification=MetricArgs(predefined_metric_type=metric),
                    target_value=float(capacity.target_utilization),
                ),
                opts=child,
            )
