"""Re-drive the dead-letter queue into the work queue once the cause is fixed.

    python -m bridge_code.replay --dlq-url URL --queue-url URL [--max N]

Works against AWS or moto (AWS_ENDPOINT_URL). Each message is sent to the work queue first
and deleted from the DLQ only after that succeeded, so a crash mid-way can duplicate a
message but never lose one (the delivery ledger stops a second call to Userflow, Segment's
messageId dedup a second event there). The dead-letter reason is dropped on the way back; the
body (the original envelope) is unchanged, so it gets a fresh receive count.

A run moves each letter at most once. Every moved message carries the run's id
(`replay_run`) and how often it has been replayed (`replay_count`); the delivery handler
copies both onto a dead letter it sends, so a letter that fails again comes back marked, is
held (invisible) until the run ends instead of being moved again, and then stays in the
dead-letter queue with its new reason for the next run. SendMessageBatch calls are cut by
bytes as well as by count.
"""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge_code.aws import AwsClients
from bridge_code.logs import log
from bridge_code.stats import DIRECTIONS, BridgeStats

RECEIVE_BATCH = 10
EMPTY_POLLS_TO_STOP = 2
# SQS capped the entries of one SendMessageBatch together (bodies and attributes) at 256 KiB,
# the size of one message; moto caps them at 1 MiB, following SQS's larger message limit.
# Batches are cut at 256 KiB, which is taken everywhere.
SEND_BATCH_BYTES = 256 * 1024
SEND_BATCH_COUNT = 10
# How long a received letter stays invisible to others: a letter held back for the rest of a
# run is released at its end, or comes back by itself this long after a crashed run.
HOLD_SECONDS = 120

# Message attributes a replay adds, which the delivery handler carries onto a dead letter.
REPLAY_RUN = "replay_run"
REPLAY_COUNT = "replay_count"
REPLAY_RUN_MAX = 64
REPLAY_COUNT_MAX_DIGITS = 6


@dataclass
class ReplayCounts:
    run_id: str = ""
    moved: int = 0
    failed: int = 0
    # Letters this run moved that came back to the dead-letter queue during the run.
    returned: int = 0
    moved_by_direction: Counter[str] = field(default_factory=Counter)


def replay_markers(values: Mapping[str, object]) -> dict[str, str]:
    """The replay attributes among a message's string attributes, when well formed (a queue
    message is untrusted: anything else is dropped)."""
    markers: dict[str, str] = {}
    run = values.get(REPLAY_RUN)
    if isinstance(run, str) and 0 < len(run) <= REPLAY_RUN_MAX and run.isascii() \
            and run.replace("-", "").isalnum():
        markers[REPLAY_RUN] = run
    count = values.get(REPLAY_COUNT)
    if isinstance(count, str) and count.isascii() and count.isdigit() \
            and len(count) <= REPLAY_COUNT_MAX_DIGITS:
        markers[REPLAY_COUNT] = count
    return markers


def _string_attributes(message: Mapping[str, Any]) -> dict[str, str]:
    """ReceiveMessage's MessageAttributes as name -> string value."""
    attributes = message.get("MessageAttributes") or {}
    return {name: value["StringValue"] for name, value in attributes.items()
            if isinstance(value, Mapping) and isinstance(value.get("StringValue"), str)}


def replay_entry(entry_id: str, message: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """The SendMessageBatch entry that puts a dead letter back: same body, its direction,
    this run's id and its replay count plus one."""
    values = _string_attributes(message)
    count = int(replay_markers(values).get(REPLAY_COUNT, "0")) + 1
    attributes = {REPLAY_RUN: {"DataType": "String", "StringValue": run_id},
                  REPLAY_COUNT: {"DataType": "Number", "StringValue": str(count)}}
    if "direction" in values:
        attributes["direction"] = {"DataType": "String", "StringValue": values["direction"]}
    return {"Id": entry_id, "MessageBody": message["Body"], "MessageAttributes": attributes}


def entry_bytes(entry: Mapping[str, Any]) -> int:
    """An entry's size as SQS counts it: the body plus each attribute's name, type and value."""
    size = len(str(entry["MessageBody"]).encode("utf-8"))
    for name, value in entry.get("MessageAttributes", {}).items():
        size += len(name.encode("utf-8")) + len(str(value["DataType"]).encode("utf-8"))
        size += len(str(value.get("StringValue", "")).encode("utf-8"))
    return size


def send_batches(entries: list[dict[str, Any]], max_bytes: int = SEND_BATCH_BYTES,
                 max_count: int = SEND_BATCH_COUNT) -> Iterator[list[dict[str, Any]]]:
    """Consecutive groups within both caps; an entry over `max_bytes` alone is its own group
    (SQS refuses it as such, and it stays parked)."""
    group: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        n = entry_bytes(entry)
        if group and (size + n > max_bytes or len(group) >= max_count):
            yield group
            group, size = [], 0
        group.append(entry)
        size += n
    if group:
        yield group


class _Run:
    """One replay run's bookkeeping: what it moved, and the letters it holds back."""

    def __init__(self, sqs: Any, dlq_url: str, queue_url: str, run_id: str,
                 stats: BridgeStats | None) -> None:
        self.sqs, self.dlq_url, self.queue_url = sqs, dlq_url, queue_url
        self.counts = ReplayCounts(run_id=run_id)
        self.stats = stats
        self.seen: set[str] = set()  # DLQ message ids this run has tried to move
        self.held: dict[str, str] = {}  # DLQ message id -> receipt handle, released at the end

    def take(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The letters to move now; the others are held until the run ends."""
        fresh = []
        for message in messages:
            mine = _string_attributes(message).get(REPLAY_RUN) == self.counts.run_id
            if mine or message["MessageId"] in self.seen:
                if mine and message["MessageId"] not in self.held:
                    self.counts.returned += 1
                self.held[message["MessageId"]] = message["ReceiptHandle"]
            else:
                fresh.append(message)
        return fresh

    def move(self, messages: list[dict[str, Any]]) -> None:
        by_id = {str(i): m for i, m in enumerate(messages)}
        entries = [replay_entry(i, m, self.counts.run_id) for i, m in by_id.items()]
        for batch in send_batches(entries):
            try:
                sent = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=batch)
                ok = {str(entry["Id"]) for entry in sent.get("Successful", [])}
            except Exception as error:
                log("replay send failed", "WARNING", letters=len(batch),
                    error=type(error).__name__)
                ok = set()
            moved = [by_id[entry["Id"]] for entry in batch if entry["Id"] in ok]
            for entry in batch:
                message = by_id[entry["Id"]]
                self.seen.add(message["MessageId"])
                if entry["Id"] not in ok:
                    # Not tried again in this run; it stays in the dead-letter queue.
                    self.held[message["MessageId"]] = message["ReceiptHandle"]
            if moved:
                self._delete(moved)
            self.counts.moved += len(moved)
            self.counts.failed += len(batch) - len(moved)
            for message in moved:
                self._count(_string_attributes(message).get("direction", "unknown"))

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        # A letter moved but not deleted is held for the run and moved again by a later one:
        # a duplicate the ledger and Segment's messageId dedup absorb, never a loss.
        for start in range(0, len(messages), SEND_BATCH_COUNT):
            chunk = messages[start:start + SEND_BATCH_COUNT]
            try:
                self.sqs.delete_message_batch(QueueUrl=self.dlq_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(chunk)])
            except Exception as error:
                log("replay delete failed", "WARNING", letters=len(chunk),
                    error=type(error).__name__)

    def _count(self, direction: str) -> None:
        self.counts.moved_by_direction[direction] += 1
        for known in DIRECTIONS:
            if self.stats is not None and direction == known:
                self.stats.add(known, "replayed")

    def release(self) -> None:
        """Make the held letters visible again for the next run."""
        handles = list(self.held.values())
        for start in range(0, len(handles), SEND_BATCH_COUNT):
            chunk = handles[start:start + SEND_BATCH_COUNT]
            try:
                self.sqs.change_message_visibility_batch(QueueUrl=self.dlq_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                    for i, handle in enumerate(chunk)])
            except Exception as error:  # they come back after HOLD_SECONDS all the same
                log("replay release failed", "WARNING", letters=len(chunk),
                    error=type(error).__name__)
        self.held.clear()


def redrive(sqs: Any, dlq_url: str, queue_url: str, max_messages: int | None = None,
            progress: Callable[[ReplayCounts], None] | None = None,
            wait_seconds: int = 1, stats: BridgeStats | None = None,
            run_id: str | None = None) -> ReplayCounts:
    """Move up to `max_messages` (all if None) from the DLQ to the queue, each at most once."""
    run = _Run(sqs, dlq_url, queue_url, run_id or uuid.uuid4().hex, stats)
    counts = run.counts
    empty_polls = 0
    try:
        while max_messages is None or counts.moved + counts.failed < max_messages:
            want = RECEIVE_BATCH if max_messages is None else min(
                RECEIVE_BATCH, max_messages - counts.moved - counts.failed)
            reply = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=want,
                                        WaitTimeSeconds=wait_seconds,
                                        MessageAttributeNames=["All"],
                                        VisibilityTimeout=HOLD_SECONDS)
            fresh = run.take(reply.get("Messages", []))
            if not fresh:
                empty_polls += 1
                if empty_polls >= EMPTY_POLLS_TO_STOP:
                    break
                continue
            empty_polls = 0
            run.move(fresh)
            if progress:
                progress(counts)
    finally:
        run.release()
    return counts


def main(argv: list[str] | None = None) -> int:
    import argparse  # the delivery handler imports this module's names, not its CLI

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
    print(f"replay done (run {counts.run_id}): moved {counts.moved} message(s) to the queue, "
          f"{counts.failed} could not be sent (left in the dead-letter queue), "
          f"{counts.returned} failed again and are back in it")
    return 1 if counts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
