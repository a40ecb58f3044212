"""Demo traffic both ways and the exactly-once accounting of what arrived.

The traffic includes, by design, events the bridge must skip, so the demo shows that it does
and why (the reasons are the bridge's, docs/ARCHITECTURE.md):
- `no_user_id`: anonymous-only `track` calls (a visitor before sign-up). Userflow keys
  everything by user id, so the bridge drops them; they must not appear in Userflow at all.
- `echo`: one app `track` named like a Userflow built-in event ("Flow Completed"). The bridge
  writes it to Userflow as `flow_completed` marked `bridged_from: segment`; the Userflow webhook
  subscription covers `event.tracked.flow_completed`, so it comes straight back to the bridge,
  which must drop it instead of sending it to Segment a second time.
- `replay`: once everything arrived, the demo resends one genuine signed delivery exactly as
  Segment's emulator sent it (body bytes and `X-Signature`, from its delivery log). The
  bridge's replay ledger already holds its `messageId`: it answers 200, enqueues nothing and
  counts the events `skipped: replay`. Segment's own retry of a request whose answer was lost
  is a replay too, so the expected count adds the emulator's redeliveries after a lost answer.
(An `alias` is not sent: the destination's default trigger covers identify, track and group
only, so Segment itself would never hand one to the bridge.)

Planning and accounting are pure functions of data (a seeded plan, the emulators' state
snapshots, the bridge's stats), so they are testable without any process; sending is the
only I/O here and uses the official `segment-analytics-python` client, unmodified.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The skip reasons are the bridge's own names, as its stats report them.
from bridge_code.ingest import SKIP_REPLAY
from bridge_code.mapping import SKIP_ECHO, SKIP_NO_USER_ID

BRIDGED_FROM = ("bridged_from", "segment")
USERFLOW_MARKER_KEY = "userflowBridge"
PLANS = ("free", "starter", "growth", "enterprise")
REPORT_TYPES = ("funnel", "retention", "revenue", "cohort")
# Each simulated activity and the Userflow events it records (docs/ARCHITECTURE.md).
ACTIVITY_EVENTS: Mapping[str, tuple[str, ...]] = {
    "flow": ("flow_started", "flow_completed"),
    "checklist_task": ("checklist_task_completed",),
}
TRACK_EVENT = "Report Created"
TRACK_EVENT_USERFLOW = "report_created"
# Every track call carries its message id under this property, so its arrival in Userflow
# (as an event attribute) is matched to the call without relying on names or timing.
REF_PROPERTY = "demo_ref"
# The traffic the bridge must skip, per run (see the module docstring).
ANONYMOUS_TRACKS = 2
ANONYMOUS_EVENT = "Pricing Page Viewed"
ANONYMOUS_EVENT_USERFLOW = "pricing_page_viewed"
ECHO_EVENT = "Flow Completed"
ECHO_EVENT_USERFLOW = "flow_completed"
# What each skip reason means, printed under the table for the reasons that occurred.
SKIP_REASONS: Mapping[str, str] = {
    SKIP_NO_USER_ID: "anonymous-only call (no userId): Userflow needs a user id",
    SKIP_ECHO: "an event the bridge itself wrote to Userflow came back by webhook",
    SKIP_REPLAY: "a signed request the bridge had accepted, sent again (the demo's one on "
                 "purpose, or Segment's retry after a lost answer): 200, nothing enqueued; "
                 "counted in sent, not in Segment's count",
    "disabled": "event type turned off in the bridge's mapping",
    "unsupported": "event type or topic the bridge does not map",
    "invalid": "malformed event",
}


@dataclass(frozen=True)
class SegmentCall:
    """One call of the official library: identify, track or group.

    `skip`: the reason the bridge must skip it (it must then arrive nowhere in Userflow);
    `echo`: it is delivered to Userflow, comes back through the Userflow webhook, and the
    bridge must drop that as an echo (it must not arrive in Segment a second time)."""

    kind: str
    user_id: str | None
    message_id: str
    traits: Mapping[str, Any] = field(default_factory=dict)
    event: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    group_id: str | None = None
    anonymous_id: str | None = None
    skip: str | None = None
    echo: bool = False


@dataclass(frozen=True)
class Activity:
    """One simulated in-app activity of a user in Userflow."""

    user_id: str
    activity: str
    group_id: str | None = None


@dataclass(frozen=True)
class DemoPlan:
    run_id: str
    calls: tuple[SegmentCall, ...]
    activities: tuple[Activity, ...]

    @property
    def user_ids(self) -> list[str]:
        return sorted({c.user_id for c in self.calls if c.user_id is not None})

    def count(self, kind: str) -> int:
        return sum(1 for c in self.calls if c.kind == kind)

    @property
    def userflow_events(self) -> int:
        """Events the simulated in-app activity records in Userflow."""
        return sum(len(ACTIVITY_EVENTS[a.activity]) for a in self.activities)

    @property
    def forwarded_calls(self) -> tuple[SegmentCall, ...]:
        """The calls the bridge must deliver to Userflow (all but the designed skips)."""
        return tuple(c for c in self.calls if c.skip is None)

    @property
    def echoes(self) -> int:
        return sum(1 for c in self.calls if c.echo)

    @property
    def skips_segment_to_userflow(self) -> dict[str, int]:
        return dict(Counter(c.skip for c in self.calls if c.skip is not None))

    @property
    def skips_userflow_to_segment(self) -> dict[str, int]:
        return {SKIP_ECHO: self.echoes} if self.echoes else {}


def plan_traffic(users: int, seed: int) -> DemoPlan:
    """N users, each identified, tracked once and put into one of ~N/3 groups; each user
    then starts and completes a flow, and every other user completes a checklist task.
    Plus, by design, ANONYMOUS_TRACKS anonymous-only tracks (skipped: no_user_id) and one
    "Flow Completed" track of the first user (delivered, then dropped as an echo)."""
    if users < 1:
        raise ValueError("the demo needs at least one user")
    rng = random.Random(seed)
    run_id = f"{seed:x}{rng.randrange(16**6):06x}"
    groups = max(1, users // 3)
    calls: list[SegmentCall] = []
    activities: list[Activity] = []
    for i in range(users):
        user_id = f"demo-{run_id}-user-{i:03d}"
        group_id = f"demo-{run_id}-company-{i % groups:03d}"
        plan = rng.choice(PLANS)
        calls.append(SegmentCall(
            "identify", user_id, f"{run_id}-identify-{i}",
            traits={"name": f"Demo User {i}", "email": f"user{i}@{run_id}.example",
                    "plan": plan, "createdAt": f"2026-01-{1 + i % 28:02d}T09:00:00Z"},
        ))
        calls.append(SegmentCall(
            "track", user_id, f"{run_id}-track-{i}", event=TRACK_EVENT,
            properties={"report_id": f"{run_id}-report-{i}",
                        "report_type": rng.choice(REPORT_TYPES),
                        "rows": rng.randint(1, 5000), "company_id": group_id,
                        REF_PROPERTY: f"{run_id}-track-{i}"},
        ))
        calls.append(SegmentCall(
            "group", user_id, f"{run_id}-group-{i}", group_id=group_id,
            traits={"name": f"Company {i % groups}", "plan": plan},
        ))
        activities.append(Activity(user_id, "flow", group_id))
        if i % 2 == 0:
            activities.append(Activity(user_id, "checklist_task", group_id))
    for k in range(ANONYMOUS_TRACKS):
        message_id = f"{run_id}-anonymous-{k}"
        calls.append(SegmentCall(
            "track", None, message_id, event=ANONYMOUS_EVENT,
            properties={"path": "/pricing", REF_PROPERTY: message_id},
            anonymous_id=f"demo-{run_id}-visitor-{k:03d}", skip=SKIP_NO_USER_ID,
        ))
    echo_id = f"{run_id}-echo-0"
    calls.append(SegmentCall(
        "track", f"demo-{run_id}-user-000", echo_id, event=ECHO_EVENT,
        properties={"flow": "app tour", REF_PROPERTY: echo_id}, echo=True,
    ))
    return DemoPlan(run_id, tuple(calls), tuple(activities))


# -- sending ----------------------------------------------------------------------------------


def send_segment_calls(
    calls: Sequence[SegmentCall], write_key: str, segment_url: str, timeout_s: float = 30.0
) -> dict[str, float]:
    """Send through the official library; returns each call's send time (epoch seconds)."""
    from segment.analytics.client import Client

    errors: list[str] = []
    client = Client(
        write_key=write_key,
        host=segment_url,
        on_error=lambda error, _batch: errors.append(type(error).__name__),
        max_retries=3,
        timeout=int(timeout_s),
        upload_interval=0.1,
    )
    sent_at: dict[str, float] = {}
    for call in calls:
        sent_at[call.message_id] = time.time()
        if call.kind == "identify":
            client.identify(call.user_id, dict(call.traits), message_id=call.message_id)
        elif call.kind == "track":
            client.track(call.user_id, call.event, dict(call.properties),
                         anonymous_id=call.anonymous_id, message_id=call.message_id)
        elif call.kind == "group":
            client.group(call.user_id, call.group_id, dict(call.traits),
                         message_id=call.message_id)
        else:
            raise ValueError(f"unknown call kind {call.kind!r}")
    client.flush()
    client.join()
    if errors:
        raise RuntimeError(f"the Segment library reported errors: {sorted(set(errors))}")
    return sent_at


# -- replays ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapturedDelivery:
    """One delivery Segment's emulator made and the bridge answered 2xx, as sent on the wire."""

    url: str
    body: bytes
    signature: str
    message_ids: tuple[str, ...]


@dataclass(frozen=True)
class Replays:
    """The `replay` skips the bridge must count in the Segment → Userflow direction.

    `on_purpose`: events in the request the demo resent; `redelivered`: events in the
    emulator's own retries that followed a lost answer (the bridge had accepted the request,
    Segment could not know, so its retry is a replay); `message_ids`: those resent on purpose,
    which must still be in Userflow once."""

    on_purpose: int = 0
    redelivered: int = 0
    message_ids: tuple[str, ...] = ()

    @property
    def expected(self) -> int:
        return self.on_purpose + self.redelivered


NO_REPLAYS = Replays()  # a demo run that resends nothing


def _forwarded_ids(plan: DemoPlan) -> set[str]:
    """The calls the bridge forwards: a replay of them is counted (a request whose events are
    all skipped for another reason never reaches the replay ledger)."""
    return {c.message_id for c in plan.forwarded_calls}


def _delivery_ids(attempt: Mapping[str, Any]) -> tuple[str, ...]:
    ids = attempt.get("message_ids")
    return tuple(str(i) for i in ids) if isinstance(ids, list) else ()


def capture_delivery(
    plan: DemoPlan, deliveries: Sequence[Mapping[str, Any]], destination_id: str
) -> CapturedDelivery | None:
    """A delivery to the bridge's destination that it answered 2xx and that carries only
    calls it forwards, none of them the echo-bound track (the echo path is shown on its own);
    the first holding a track if any (a track delivered twice shows as two Userflow events,
    not only as one write too many); None if there is none."""
    forwarded = _forwarded_ids(plan) - {c.message_id for c in plan.calls if c.echo}
    tracks = {c.message_id for c in plan.calls if c.kind == "track"}
    candidates: list[CapturedDelivery] = []
    for attempt in deliveries:
        ids = _delivery_ids(attempt)
        body, signature = attempt.get("body"), attempt.get("signature")
        if (attempt.get("destination_id") == destination_id
                and attempt.get("outcome") == "success"
                and isinstance(body, str) and isinstance(signature, str) and signature
                and ids and set(ids) <= forwarded):
            candidates.append(CapturedDelivery(str(attempt.get("url")), body.encode("utf-8"),
                                               signature, ids))
    with_track = [c for c in candidates if tracks & set(c.message_ids)]
    chosen = with_track or candidates
    return chosen[0] if chosen else None


def replayed_events(plan: DemoPlan, message_ids: Iterable[str]) -> int:
    """How many `replay` skips one resent request counts: the bridge counts the events it
    would have enqueued, i.e. those it forwards."""
    forwarded = _forwarded_ids(plan)
    return sum(1 for i in message_ids if i in forwarded)


def redelivered_after_lost_answer(
    plan: DemoPlan, deliveries: Sequence[Mapping[str, Any]], destination_id: str
) -> int:
    """Events the emulator sent the bridge again after an attempt got no answer (timeout,
    dropped connection). The bridge is on loopback, so a lost answer means it was too slow,
    not that it never read the request: it accepted it, and each later attempt it answers 2xx
    or again not at all is a replay. An answer of 429 (the first copy still being accepted)
    or 5xx is not a replay and not counted."""
    by_delivery: dict[str, list[Mapping[str, Any]]] = {}
    for attempt in deliveries:
        if attempt.get("destination_id") == destination_id:
            by_delivery.setdefault(str(attempt.get("delivery_id")), []).append(attempt)
    events = 0
    for attempts in by_delivery.values():
        ordered = sorted(attempts, key=lambda a: int(a.get("attempt") or 0))
        lost = False
        for attempt in ordered:
            status = attempt.get("status")
            if lost and (status is None or (isinstance(status, int) and 200 <= status < 300)):
                events += replayed_events(plan, _delivery_ids(attempt))
            lost = lost or status is None
    return events


