"""SQS entry point: deliver a batch's events upstream concurrently, report partial failures.

Per record the outcome is one of: delivered (acknowledged), dead-lettered (permanent failure:
sent to DEAD_LETTER_QUEUE_URL with the reason, then acknowledged), or left to SQS (listed in
`batchItemFailures`, redelivered after the visibility timeout). A message still failing at
`poison_receive_count` receives is dead-lettered with its last error instead.

Segment-bound events of one batch travel together in `POST /v1/batch` calls; Userflow-bound
events are one REST call each, in parallel on a shared thread pool, each claimed in the
ledger first (one conditional write), and all of an invocation's claims marked settled by one
write after its calls, so that no event reaches Userflow twice (a Segment redelivery, an SQS
redelivery after a crash, a dead-letter replay) except where the outcome of a call cannot be
known: those are counted `ambiguous`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal

from bridge_code import VERSION
from bridge_code.claims import ClaimedCalls
from bridge_code.envelope import (
    Envelope,
    InvalidEnvelope,
    compact_json,
    decode_envelope,
    decode_envelopes,
    event_text,
    pack_envelopes,
)
from bridge_code.logs import log, summary
from bridge_code.mapping import (
    SEGMENT_EVENT_LIMIT,
    SEGMENT_MESSAGE_ID_MAX,
    Skip,
    UserflowCall,
    is_mapping,
    segment_event_to_userflow,
    userflow_notification_to_segment,
)
from bridge_code.metrics import measured
from bridge_code.pool import CallPool
from bridge_code.replay import REPLAY_COUNT, replay_markers
from bridge_code.runtime import BridgeRuntime
from bridge_code.secret_store import SecretUnavailable
from bridge_code.stats import Direction
from bridge_code.upstream import Outcome, UpstreamClient

USERFLOW_VERSION = "2020-01-03"
USER_AGENT = f"userflow-segment-bridge/{VERSION}"
SEGMENT_BATCH_LIMIT = 500 * 1024
SEGMENT_BATCH_MAX_EVENTS = 2500
# Upstream calls in flight per container: threads start only as calls need them, so a large
# bound costs nothing on a small batch, and a batch of deliveryBatchSize messages (several
# events each) runs its Userflow calls in about one round trip up to this many (the
# capacity model in the README).
DELIVERY_THREADS = 64
AUTH_FAILURES = frozenset({401, 403})

# Dead-letter reasons (message attribute `dead_letter_reason`).
DeadLetterReason = Literal["invalid_message", "rejected", "oversize", "retries_exhausted",
                           "not_configured"]
DLQ_INVALID: DeadLetterReason = "invalid_message"
DLQ_REJECTED: DeadLetterReason = "rejected"
DLQ_OVERSIZE: DeadLetterReason = "oversize"
DLQ_EXHAUSTED: DeadLetterReason = "retries_exhausted"
DLQ_NOT_CONFIGURED: DeadLetterReason = "not_configured"

ItemOutcome = Literal["pending", "delivered", "dead_letter", "dead_lettered", "retry",
                      "requeued", "skipped"]
"""pending: not decided yet; delivered: the upstream took it (or had it already);
dead_letter: to be parked, then dead_lettered once the DLQ has it; retry: left to SQS;
requeued: to retry, sent again in a new message (the rest of its message was settled);
skipped: deliberately not forwarded (reason counted)."""


@dataclass(slots=True)
class Item:
    """One SQS record on its way through the handler."""

    message_id: str
    body: str
    receive_count: int
    direction: Direction | None = None
    envelope: Envelope | None = None
    outcome: ItemOutcome = "pending"
    reason: str = ""
    detail: str = ""
    attempts: int = 0
    delivery_key: str = ""
    # The replay attributes it came with, carried onto its dead letter (bridge_code/replay.py).
    replay: dict[str, str] = field(default_factory=dict)


def _record_items(event: Mapping[str, Any]) -> list[Item]:
    records = event.get("Records") if is_mapping(event) else None
    items = []
    for record in records if isinstance(records, list) else []:
        if not is_mapping(record):
            continue
        attributes = record.get("attributes")
        attributes = attributes if is_mapping(attributes) else {}
        try:
            receive_count = int(attributes.get("ApproximateReceiveCount", 1))
        except (TypeError, ValueError):
            receive_count = 1
        items += _message_items(str(record.get("messageId", "")), str(record.get("body", "")),
                                receive_count, _replay_markers(record.get("messageAttributes")))
    return items


def _replay_markers(attributes: object) -> dict[str, str]:
    """The replay attributes of a Lambda SQS record (`{name: {"stringValue": ...}}`)."""
    if not attributes or not is_mapping(attributes):  # usually absent: no Mapping check
        return {}
    return replay_markers({name: value.get("stringValue") for name, value in attributes.items()
                           if is_mapping(value)})


def _message_items(message_id: str, body: str, receive_count: int,
                   replay: dict[str, str]) -> list[Item]:
    """One item per event the message carries, each with the message's id (SQS settles
    messages); a message that is no envelope is one item, dead-lettered whole by `_sort`.
    An event of a several-event message has no body of its own until it is dead-lettered."""
    try:
        envelopes = decode_envelopes(body)
    except InvalidEnvelope:
        return [Item(message_id, body, receive_count, replay=replay)]
    if len(envelopes) == 1:
        envelope = envelopes[0]
        return [Item(message_id, body, receive_count + envelope.receives, envelope=envelope,
                     replay=replay)]
    return [Item(message_id, "", receive_count + envelope.receives, envelope=envelope,
                 replay=replay) for envelope in envelopes]


class DeliveryApp:
    """Delivers SQS batches; one instance per container, built from a `BridgeRuntime`."""

    def __init__(self, runtime: BridgeRuntime, upstream: UpstreamClient | None = None) -> None:
        s = runtime.settings
        self.runtime = runtime
        self.upstream = upstream or UpstreamClient(
            s.upstream_timeout_seconds, s.max_attempts, s.backoff_base_seconds,
            s.backoff_cap_seconds, pool_size=DELIVERY_THREADS + 1)
        self.pool = CallPool(DELIVERY_THREADS, "bridge-delivery")

    def close(self) -> None:
        self.pool.shutdown()

    def handle(self, event: Mapping[str, Any], context: object = None) -> dict[str, Any]:
        started = time.perf_counter()
        items = _record_items(event)
        try:
            deadline = self._deadline(context)
            self._deliver(items, deadline)
            self._settle(items)
            self._requeue_unsettled_part(items)
        except Exception as error:
            # Whatever went wrong, SQS redelivers everything not yet settled: nothing is lost.
            log("unhandled error", "ERROR", error=type(error).__name__)
            for item in items:
                if item.outcome in {"pending", "dead_letter"}:
                    item.outcome = "retry"
        failures = [{"itemIdentifier": message_id} for message_id in
                    dict.fromkeys(i.message_id for i in items if i.outcome == "retry")]
        counts = Counter(i.outcome for i in items)
        summary("batch", records=len(items), delivered=counts["delivered"],
                dead_lettered=counts["dead_lettered"], skipped=counts["skipped"],
                requeued=len(failures),
                duration_ms=round((time.perf_counter() - started) * 1000, 2))
        return {"batchItemFailures": failures}

    def _deadline(self, context: object) -> float:
        s = self.runtime.settings
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        budget = remaining_ms() / 1000 if callable(remaining_ms) else s.default_budget_seconds
        return time.monotonic() + max(0.5, budget - s.deadline_margin_seconds)

    # --- sorting the batch ------------------------------------------------------------------

    def _deliver(self, items: list[Item], deadline: float) -> None:
        userflow: dict[str, tuple[UserflowCall, list[Item]]] = {}
        segment: dict[str, tuple[dict[str, Any], list[Item]]] = {}
        for item in items:
            try:
                self._sort(item, userflow, segment)
            except InvalidEnvelope as error:
                self._dead(item, DLQ_INVALID, str(error))
            except Exception as error:
                # One message the mapping cannot handle must not hold up the rest of the batch.
                self._dead(item, DLQ_INVALID, f"mapping failed: {type(error).__name__}")
        stats = self.runtime.stats
        stats.add("segment_to_userflow", "duplicates",
                  sum(len(group) - 1 for _, group in userflow.values()))
        stats.add("userflow_to_segment", "duplicates",
                  sum(len(group) - 1 for _, group in segment.values()))
        calls: list[tuple[Callable[[], Outcome], list[Item], str | None]] = []
        claimed = None
        if userflow and self.runtime.ledger is not None:
            claimed = ClaimedCalls(self.runtime.ledger, self.upstream, self.runtime.stats,
                                   self.runtime.settings.deadline_margin_seconds)
        if userflow:
            calls += [(c, g, self.runtime.settings.userflow_api_key_arn)
                      for c, g in self._userflow_calls(list(userflow.values()), deadline,
                                                       claimed)]
        claims = len(calls)
        if segment:
            calls += [(c, g, self.runtime.settings.segment_write_key_arn)
                      for c, g in self._segment_calls(list(segment.values()), deadline)]
        if not calls:
            return
        # All calls but the last go to the pool; the last runs on this thread (hence the
        # connection pool's one extra connection), which would
        # otherwise only wait: one thread hand-off less per batch (all of it for a batch that
        # makes a single call, as a Segment batch does), the same concurrency.
        *pooled, (last_call, last_group, last_secret) = calls
        batch = self.pool.start([call for call, _, _ in pooled])
        last_error: Exception | None = None
        try:
            last_outcome = last_call()
        except Exception as error:  # recorded after the pooled calls, as theirs are
            last_error = error
        batch.wait()
        for index, (_, group, secret_id) in enumerate(pooled):
            self._record(group, self._after_auth_failure(batch.result(index), secret_id))
        # Every call has ended here (a pooled one that raised left the loop above, and its
        # claims unsettled: each is taken over after its hold).
        if claims and claimed is not None:
            claimed.settle()
        if last_error is not None:
            raise last_error
        self._record(last_group, self._after_auth_failure(last_outcome, last_secret))

    def _after_auth_failure(self, outcome: Outcome, secret_id: str | None) -> Outcome:
        """A 401/403 likely means the key was rotated under our cache: refresh it (bounded)
        and let SQS redeliver, rather than dead-letter a whole batch for a stale key."""
        if outcome.ok or outcome.status not in AUTH_FAILURES or secret_id is None:
            return outcome
        with contextlib.suppress(SecretUnavailable):  # the retry will report it
            self.runtime.secrets.refresh_if_stale(secret_id)
        return replace(outcome, retryable=True,
                       detail=outcome.detail + " (credentials refreshed; retried later)")

    def _sort(self, item: Item, userflow: dict[str, tuple[UserflowCall, list[Item]]],
              segment: dict[str, tuple[dict[str, Any], list[Item]]]) -> None:
        """Map one record and file it under its upstream call (or skip it)."""
        envelope = item.envelope = item.envelope or decode_envelope(item.body)
        item.direction = envelope.direction
        if item.direction == "segment_to_userflow":
            call = segment_event_to_userflow(envelope.event, self.runtime.mapping)
            if isinstance(call, Skip):
                self._skip(item, call.reason)
                return
            # The same Segment messageId twice in one batch (a Segment retry) is one call.
            key = item.delivery_key = _delivery_key(envelope.event.get("messageId"), call)
            userflow.setdefault(key, (call, []))[1].append(item)
        else:
            message = userflow_notification_to_segment(envelope.event, self.runtime.mapping)
            if isinstance(message, Skip):
                self._skip(item, message.reason)
                return
            segment.setdefault(message["messageId"], (message, []))[1].append(item)

    def _credential(self, secret_id: str | None, variable: str,
                    groups: list[list[Item]]) -> str | None:
        if not secret_id:
            for group in groups:
                for item in group:
                    self._dead(item, DLQ_NOT_CONFIGURED, f"{variable} is not set")
            return None
        try:
            return self.runtime.secrets.values(secret_id)[0]
        except SecretUnavailable as error:
            for group in groups:
                for item in group:
                    self._retry(item, str(error))
            return None

    # --- Userflow ---------------------------------------------------------------------------

    def _userflow_calls(self, calls: list[tuple[UserflowCall, list[Item]]], deadline: float,
                        claimed: ClaimedCalls | None,
                        ) -> list[tuple[Callable[[], Outcome], list[Item]]]:
        s = self.runtime.settings
        if claimed is None:
            for _, group in calls:
                for item in group:
                    self._dead(item, DLQ_NOT_CONFIGURED, "BRIDGE_LEDGER_TABLE is not set")
            return []
        key = self._credential(s.userflow_api_key_arn,
                               "USERFLOW_API_KEY_ARN", [group for _, group in calls])
        if key is None:
            return []
        headers = {"Authorization": f"Bearer {key}", "Userflow-Version": USERFLOW_VERSION,
                   "Content-Type": "application/json", "User-Agent": USER_AGENT}
        jobs: list[tuple[Callable[[], Outcome], list[Item]]] = []
        for call, group in calls:
            body = None if call.body is None else compact_json(call.body).encode("ascii")
            jobs.append((partial(claimed.send, group[0].delivery_key, call.method,
                                 s.userflow_api_url + call.path, headers, body, deadline),
                         group))
        return jobs

    # --- Segment ----------------------------------------------------------------------------

    def _segment_calls(self, messages: list[tuple[dict[str, Any], list[Item]]],
                       deadline: float) -> list[tuple[Callable[[], Outcome], list[Item]]]:
        s = self.runtime.settings
        write_key = self._credential(s.segment_write_key_arn,
                                     "SEGMENT_WRITE_KEY_ARN", [group for _, group in messages])
        if write_key is None:
            return []
        token = base64.b64encode(f"{write_key}:".encode()).decode("ascii")
        headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json",
                   "User-Agent": USER_AGENT}
        url = s.segment_tracking_url + "/v1/batch"
        jobs: list[tuple[list[bytes], list[list[Item]]]] = []
        current: tuple[list[bytes], list[list[Item]]] = ([], [])
        size = 0
        for message, group in messages:
            encoded = compact_json(message).encode("ascii")
            if len(encoded) > SEGMENT_EVENT_LIMIT:
                for item in group:
                    self._dead(item, DLQ_OVERSIZE, f"Segment event is {len(encoded)} bytes; "
                               f"Segment accepts at most {SEGMENT_EVENT_LIMIT}")
                continue
            if current[0] and (size + len(encoded) + 1 > SEGMENT_BATCH_LIMIT - 200
                               or len(current[0]) >= SEGMENT_BATCH_MAX_EVENTS):
                jobs.append(current)
                current, size = ([], []), 0
            current[0].append(encoded)
            current[1].append(group)
            size += len(encoded) + 1
        if current[0]:
            jobs.append(current)
        calls: list[tuple[Callable[[], Outcome], list[Item]]] = []
        for encoded_messages, groups in jobs:
            flat = [item for group in groups for item in group]
            calls.append((partial(self._send_segment_batch, url, headers, encoded_messages,
                                  groups, deadline), flat))
        return calls

    def _send_segment_batch(self, url: str, headers: Mapping[str, str], messages: list[bytes],
                            groups: list[list[Item]], deadline: float) -> Outcome:
        outcome = self._post_segment(url, headers, messages, deadline)
        return self._narrow(url, headers, messages, groups, deadline, outcome)

    def _post_segment(self, url: str, headers: Mapping[str, str], messages: list[bytes],
                      deadline: float) -> Outcome:
        outcome = self.upstream.send("POST", url, headers, _segment_batch_body(messages),
                                     deadline)
        self.runtime.stats.add("userflow_to_segment", "upstream_calls", outcome.attempts)
        return outcome

    def _narrow(self, url: str, headers: Mapping[str, str], messages: list[bytes],
                groups: list[list[Item]], deadline: float, outcome: Outcome) -> Outcome:
        """Settle a batch's events after its call, narrowing a failure down to the events
        that cause it so that their batch-mates are delivered, not parked with them."""
        if outcome.ok or len(messages) == 1 or outcome.status in AUTH_FAILURES:
            return outcome
        if not outcome.retryable:
            # Segment refused the batch (400: one event it cannot take). Send the events one
            # by one so only the faulty one is dead-lettered.
            for message, group in zip(messages, groups, strict=True):
                self._record(group, self._after_auth_failure(
                    self._post_segment(url, headers, [message], deadline),
                    self.runtime.settings.segment_write_key_arn))
            return Outcome(True, False, outcome.status, "settled one by one", outcome.attempts)
        if outcome.status is None or outcome.status < 500:
            # Throttling, timeouts, refused connections are about Segment, not about an event.
            return outcome
        # A 5xx after all retries may be one event Segment chokes on: try the halves. If both
        # fail too, Segment itself is failing; the batch goes back to SQS as it is rather
        # than an outage being multiplied into one call per event.
        middle = len(messages) // 2
        halves = [(messages[:middle], groups[:middle]), (messages[middle:], groups[middle:])]
        outcomes = [self._post_segment(url, headers, part, deadline) for part, _ in halves]
        if not any(half.ok for half in outcomes):
            return outcome
        for (part, part_groups), half in zip(halves, outcomes, strict=True):
            settled = self._after_auth_failure(
                self._narrow(url, headers, part, part_groups, deadline, half),
                self.runtime.settings.segment_write_key_arn)
            for group in part_groups:
                self._record(group, settled)
        return Outcome(True, False, outcome.status, "settled by halves", outcome.attempts)

    # --- outcomes ---------------------------------------------------------------------------

    def _record(self, group: list[Item], outcome: Outcome) -> None:
        direction = group[0].direction if group else None
        if direction is not None and outcome.already_delivered:
            self.runtime.stats.add(direction, "duplicates", len(group))
        if direction is not None and outcome.ambiguous:
            # No ledger can tell whether the earlier attempt reached Userflow: the event may
            # now be there twice. Counted and logged so that an operator sees it.
            self.runtime.stats.add(direction, "ambiguous")
            log("ambiguous delivery", "WARNING", direction=direction,
                message_id=group[0].message_id, key=group[0].delivery_key)
        for item in group:
            if item.outcome != "pending":
                continue
            item.attempts = outcome.attempts
            if outcome.ok:
                item.outcome = "delivered"
            elif outcome.retryable:
                self._retry(item, outcome.detail)
            else:
                self._dead(item, DLQ_REJECTED, outcome.detail)

    def _retry(self, item: Item, detail: str) -> None:
        if item.receive_count >= self.runtime.settings.poison_receive_count:
            self._dead(item, DLQ_EXHAUSTED, detail)
        else:
            item.outcome, item.detail = "retry", detail

    def _dead(self, item: Item, reason: DeadLetterReason, detail: str) -> None:
        item.outcome, item.reason, item.detail = "dead_letter", reason, detail

    def _skip(self, item: Item, reason: str) -> None:
        item.outcome, item.reason = "skipped", reason

    def _settle(self, items: list[Item]) -> None:
        """Send dead letters, then count everything; a dead letter that cannot be sent retries."""
        s, stats = self.runtime.settings, self.runtime.stats
        counts: Counter[tuple[Direction, str]] = Counter()  # added under one lock each below
        try:
            for item in items:
                if item.outcome == "dead_letter":
                    if s.dead_letter_queue_url and self._send_dead_letter(item):
                        item.outcome = "dead_lettered"
                    else:
                        item.outcome = "retry"
                direction = item.direction or "segment_to_userflow"
                if item.outcome == "delivered":
                    counts[direction, "delivered"] += 1
                elif item.outcome == "dead_lettered":
                    counts[direction, "dead_lettered"] += 1
                    log("dead-lettered", message_id=item.message_id, direction=direction,
                        reason=item.reason, detail=item.detail[:500])
                elif item.outcome == "skipped":
                    stats.skip(direction, item.reason)
                elif item.outcome == "retry":
                    counts[direction, "requeued"] += 1
                if item.attempts > 1:
                    counts[direction, "retried"] += item.attempts - 1
        finally:
            for (direction, counter), n in counts.items():
                stats.add(direction, counter, n)

    def _requeue_unsettled_part(self, items: list[Item]) -> None:
        """A several-event message with some events settled and others to retry: queue the
        ones to retry as a new message and acknowledge the old one, so that the settled
        events keep their outcome (no second dead letter, no second ledger check). If the
        new message cannot be sent, SQS redelivers the whole message: the delivery ledger
        still stops a second Userflow call for the delivered ones."""
        if not any(item.outcome == "retry" for item in items):
            return  # the usual batch: nothing left to retry
        by_message: dict[str, list[Item]] = {}
        for item in items:
            by_message.setdefault(item.message_id, []).append(item)
        for group in by_message.values():
            retry = [item for item in group if item.outcome == "retry"]
            if not retry or len(retry) == len(group) or any(i.envelope is None for i in retry):
                continue
            if self._send_events_again(retry):
                for item in retry:
                    item.outcome = "requeued"

    def _send_events_again(self, items: list[Item]) -> bool:
        first = items[0].envelope
        assert first is not None  # checked by the caller
        texts = [event_text(item.envelope.event) for item in items if item.envelope]
        bodies = pack_envelopes(first.direction, texts, first.received_at, first.request_id,
                                receives=items[0].receive_count)
        try:
            for body in bodies:
                self.runtime.aws.sqs.send_message(
                    QueueUrl=self.runtime.settings.queue_url, MessageBody=body,
                    MessageAttributes={"direction": {"DataType": "String",
                                                     "StringValue": first.direction}})
        except Exception as error:
            log("requeue failed", "WARNING", message_id=items[0].message_id,
                error=type(error).__name__)
            return False
        return True

    def _send_dead_letter(self, item: Item) -> bool:
        attributes = {
            "dead_letter_reason": {"DataType": "String", "StringValue": item.reason},
            "dead_letter_detail": {"DataType": "String",
                                   "StringValue": (item.detail or item.reason)[:1000]},
            "dead_lettered_at": {"DataType": "String",
                                 "StringValue": dt.datetime.now(dt.UTC).isoformat()},
        }
        if item.direction:
            attributes["direction"] = {"DataType": "String", "StringValue": item.direction}
        # A replayed message that fails again keeps its run's mark (that run does not move it
        # a second time) and its replay count.
        for name, value in item.replay.items():
            data_type = "Number" if name == REPLAY_COUNT else "String"
            attributes[name] = {"DataType": data_type, "StringValue": value}
        try:
            self.runtime.aws.sqs.send_message(
                QueueUrl=self.runtime.settings.dead_letter_queue_url,
                MessageBody=_own_body(item), MessageAttributes=attributes)
        except Exception as error:
            log("dead-letter send failed", "WARNING", message_id=item.message_id,
                error=type(error).__name__)
            return False
        return True


def _own_body(item: Item) -> str:
    """The item's message body, or for an event of a several-event message its own envelope."""
    if item.body:
        return item.body
    return item.envelope.encode() if item.envelope else "(empty)"


def _delivery_key(message_id: object, call: UserflowCall) -> str:
    """The event's key in the delivery ledger: its Segment messageId, or a digest of the call
    when the messageId is missing or too long to be Segment's (a key stays small)."""
    if isinstance(message_id, str) and 0 < len(message_id) < SEGMENT_MESSAGE_ID_MAX:
        return message_id
    text = compact_json([message_id, call.method, call.path, call.body])
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


def _segment_batch_body(messages: list[bytes]) -> bytes:
    sent_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return (b'{"batch":[' + b",".join(messages) + b'],"sentAt":"'
            + sent_at.encode("ascii") + b'"}')


_APP: DeliveryApp | None = None


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Lambda entry point (SQS event source with ReportBatchItemFailures)."""
    global _APP
    if _APP is None:
        try:
            _APP = DeliveryApp(BridgeRuntime.from_environment())
        except Exception as error:
            log("bridge misconfigured", "ERROR", error=f"{type(error).__name__}: {error}")
            records = event.get("Records") if isinstance(event, Mapping) else None
            return {"batchItemFailures": [
                {"itemIdentifier": str(r.get("messageId", ""))}
                for r in (records if isinstance(records, list) else [])
                if isinstance(r, Mapping)]}
    return measured(_APP.runtime.stats, _APP.handle, event, context)
