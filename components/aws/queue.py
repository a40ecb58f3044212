"""The work queue between ingest and delivery, with its dead-letter queue."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.project import component_type

# AWS's guidance for SQS event sources: visibility timeout at least six times the
# function's timeout, so a batch being retried by the poller is not handed out twice.
VISIBILITY_TIMEOUT_FACTOR = 6
# Keep failures as long as SQS allows (14 days) so they can be inspected and replayed.
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600


@dataclass(frozen=True)
class BridgeQueueArgs:
    """What the queue component needs."""

    name_prefix: str
    """Prefix of every physical name (carries the environment)."""
    delivery_timeout_seconds: int
    """The consuming function's timeout; sizes the visibility timeout."""
    max_receive_count: int
    """Receives before a message moves to the dead-letter queue."""


def visibility_timeout_seconds(delivery_timeout_seconds: int) -> int:
    """The work queue's visibility timeout for a consumer with this timeout."""
    return VISIBILITY_TIMEOUT_FACTOR * delivery_timeout_seconds


class BridgeQueue(pulumi.ComponentResource):
    """SQS work queue + dead-letter queue, both encrypted at rest (SQS-managed keys)."""

    queue_arn: pulumi.Output[str]
    queue_url: pulumi.Output[str]
    queue_name: pulumi.Output[str]
    dead_letter_queue_arn: pulumi.Output[str]
    dead_letter_queue_url: pulumi.Output[str]
    dead_letter_queue_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: BridgeQueueArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(component_type("BridgeQueue"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        dead_letter = aws.sqs.Queue(
            f"{name}-dead-letter",
            name=f"{args.name_prefix}-dead-letter",
            sqs_managed_sse_enabled=True,
            message_retention_seconds=DEAD_LETTER_RETENTION_SECONDS,
            opts=child,
        )
        queue = aws.sqs.Queue(
            f"{name}-work",
            name=f"{args.name_prefix}-work",
            sqs_managed_sse_enabled=True,
            message_retention_seconds=QUEUE_RETENTION_SECONDS,
            visibility_timeout_seconds=visibility_timeout_seconds(args.delivery_timeout_seconds),
            redrive_policy=pulumi.Output.json_dumps(
                {"deadLetterTargetArn": dead_letter.arn, "maxReceiveCount": args.max_receive_count}
            ),
            opts=child,
        )
        # Only our work queue may use the dead-letter queue as its target. A separate resource
        # because the queues refer to each other.
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dead-letter-allow",
            queue_url=dead_letter.url,
            redrive_allow_policy=pulumi.Output.json_dumps(
                {"redrivePermission": "byQueue", "sourceQueueArns": [queue.arn]}
            ),
            opts=child,
        )

        self.queue_arn = queue.arn
        self.queue_url = queue.url
        self.queue_name = queue.name
        self.dead_letter_queue_arn = dead_letter.arn
        self.dead_letter_queue_url = dead_letter.url
        self.dead_letter_queue_name = dead_letter.name
        self.register_outputs(
            {
                "queue_arn": self.queue_arn,
                "queue_url": self.queue_url,
                "dead_letter_queue_arn": self.dead_letter_queue_arn,
                "dead_letter_queue_url": self.dead_letter_queue_url,
            }
        )
