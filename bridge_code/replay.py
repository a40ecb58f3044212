"""Re-drive the dead-letter queue into the work queue once the cause is fixed.

    python -m bridge_code.replay --dlq-url URL --queue-url URL [--max N]

Works against AWS or moto (AWS_ENDPOINT_URL). Each message is sent to the work queue first
and deleted from the DLQ only after that succeeded, so a crash mid-way can duplicate a
message but never lose one. The dead-letter attributes are dropped on the way back; the
body (the original envelope) is unchanged, so it gets a fresh receive count.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge_code.aws import AwsClients
from bridge_code.stats import DIRECTIONS, BridgeStats

RECEIVE_BATCH = 10
EMPTY_POLLS_TO_STOP = 2


@dataclass
class ReplayCounts:
    moved: int = 0
    failed: int = 0
    moved_by_direction: Counter[str] = field(default_factory=Counter)


def redrive(sqs: Any, dlq_url: str, queue_url: str, max_messages: int | None = None,
            progress: Callable[[ReplayCounts], None] | None = None,
            wait_seconds: int = 1, stats: BridgeStats | None = None) -> ReplayCounts:
    """Move up to `max_messages` (all if None) from the DLQ to the queue."""
    counts = ReplayCounts()
    empty_polls = 0
    while max_messages is None or counts.moved + counts.failed < max_messages:
        want = RECEIVE_BATCH if max_messages is None else min(
            RECEIVE_BATCH, max_messages - counts.moved - counts.failed)
        reply = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=want,
                                    WaitTimeSeconds=wait_seconds, MessageAttributeNames=["All"],
                                    VisibilityTimeout=30)
        messages = reply.get("Messages", [])
        if not messages:
            empty_polls += 1
            if empty_polls >= EMPTY_POLLS_TO_STOP:
                break
            continue
        empty_polls = 0
        entries = [{"Id": str(i), "MessageBody": m["Body"], "MessageAttributes": {
            key: value for key, value in m.get("MessageAttributes", {}).items()
            if key == "direction"}} for i, m in enumerate(messages)]
        sent = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        ok = {entry["Id"] for entry in sent.get("Successful", [])}
        done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages) if str(i) in ok]
        if done:
            sqs.delete_message_batch(QueueUrl=dlq_url, Entries=done)
        counts.moved += len(done)
        for i, m in enumerate(messages):
            if str(i) in ok:
                direction = m.get("MessageAttributes", {}).get("direction", {})
                name = str(direction.get("StringValue", "unknown"))
                counts.moved_by_direction[name] += 1
                for known in DIRECTIONS:
                    if stats is not None and name == known:
                        stats.add(known, "replayed")
        counts.failed += len(messages) - len(done)
        if progress:
            progress(counts)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge_code.replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dlq-url", required=True, help="the dead-letter queue URL")
    parser.add_argument("--queue-url", required=True, help="the bridge's work queue URL")
    parser.add_argument("--max", type=int, default=None, help="move at most N messages")
    args = parser.parse_args(argv)
    if args.max is not None and args.max < 1:
        parser.error("--max must be at least 1")

    def progress(counts: ReplayCounts) -> None:
        print(f"moved {counts.moved}, failed {counts.failed}", flush=True)

    counts = redrive(AwsClients().sqs, args.dlq_url, args.queue_url, args.max, progress)
    print(f"replay done: moved {counts.moved} message(s) to the queue, "
          f"{counts.failed} could not be sent (left in the dead-letter queue)")
    return 1 if counts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
