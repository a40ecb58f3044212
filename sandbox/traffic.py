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
from datetime import datetime
from typing import Any

# The skip reasons are the bridge's own names, as its stats report them.
from bridge_code.ingest import SKIP_REPLAY
from bridge_code.mapping import SKIP_ECHO, SKIP_NO_USER_ID, title_case

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


# -- accounting -------------------------------------------------------------------------------


def parse_time(value: object) -> float | None:
    """Epoch seconds from an ISO 8601 timestamp (`Z` or offset), else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation: p99 of 10 values is the largest)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * pct // 100)))
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class SegmentCount:
    """What Segment itself reports for a direction (its Public API), shown beside the bridge's
    numbers: a silent drop shows only here."""

    counted: int
    failed: int = 0


# What the "Segment's count" column holds per direction, printed under the table.
SEGMENT_COUNT_MEANING = {
    "Segment → Userflow": "events Segment delivered to the bridge (its delivery metrics)",
    "Userflow → Segment": "events Segment counted on the Userflow source (its event volume)",
}


@dataclass
class DirectionReport:
    """What one direction did, and every way it fell short of exactly once.

    `sent` counts everything that reached the bridge's side of the direction; of it,
    `arrived` events must arrive exactly once and `expected_skipped` (by reason) must be
    skipped by the bridge, exactly that many, and arrive nowhere."""

    name: str
    sent: int
    arrived: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    bridge: Mapping[str, Any] = field(default_factory=dict)
    expected_skipped: Mapping[str, int] = field(default_factory=dict)
    segment: SegmentCount | None = None

    @property
    def ok(self) -> bool:
        return (not self.problems
                and self.arrived + sum(self.expected_skipped.values()) == self.sent
                and dict(self.skipped) == dict(self.expected_skipped))

    @property
    def skipped(self) -> Mapping[str, int]:
        skipped = self.bridge.get("skipped") or {}
        return {str(k): int(v) for k, v in skipped.items() if int(v)}

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def accounted(self) -> int:
        """Arrived, plus skips the bridge reported up to the designed number (for progress)."""
        return self.arrived + sum(min(n, self.skipped.get(reason, 0))
                                  for reason, n in self.expected_skipped.items())

    @property
    def dead_lettered(self) -> int:
        return int(self.bridge.get("dead_lettered", 0))

    def check_skips(self) -> None:
        """The bridge skipped exactly what the demo sent to be skipped, for the same reasons."""
        for reason in sorted(set(self.expected_skipped) | set(self.skipped)):
            want, got = self.expected_skipped.get(reason, 0), self.skipped.get(reason, 0)
            if got != want:
                self.problems.append(f"the bridge skipped {got} as {reason}, expected {want}")


def _userflow_events(userflow_state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    events = userflow_state.get("events") or []
    if isinstance(events, Mapping):
        events = list(events.values())
    return [e for e in events if isinstance(e, Mapping)]


def _userflow_users(userflow_state: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    users = userflow_state.get("users") or {}
    if isinstance(users, Mapping):
        return {str(k): v for k, v in users.items() if isinstance(v, Mapping)}
    return {str(u.get("id")): u for u in users if isinstance(u, Mapping)}


def _memberships(userflow_state: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """(user id, group id) → membership, from the emulator's state."""
    found: dict[tuple[str, str], Mapping[str, Any]] = {}
    for entry in userflow_state.get("memberships") or []:
        if isinstance(entry, Mapping):
            found[(str(entry.get("user_id")), str(entry.get("group_id")))] = entry
    return found


def _successful_writes(requests: Iterable[Mapping[str, Any]], method: str, path: str) -> int:
    return sum(
        1 for r in requests
        if r.get("method") == method and r.get("path") == path
        and isinstance(r.get("status"), int) and 200 <= int(r["status"]) < 300
    )


def account_segment_to_userflow(
    plan: DemoPlan,
    sent_at: Mapping[str, float],
    userflow_state: Mapping[str, Any],
    userflow_requests: Sequence[Mapping[str, Any]],
    bridge_stats: Mapping[str, Any],
    replays: Replays = Replays(),
) -> DirectionReport:
    """Each identify/track/group → exactly one Userflow write with the right content; each
    call designed to be skipped → skipped by the bridge for that reason, and nowhere in
    Userflow; each replay (`replays`) → skipped as `replay`, exactly that many, and its event
    still once in Userflow. `sent` counts the replayed events too: they reached the bridge."""
    expected_skipped = dict(plan.skips_segment_to_userflow)
    if replays.expected:
        expected_skipped[SKIP_REPLAY] = replays.expected
    report = DirectionReport("Segment → Userflow", sent=len(plan.calls) + replays.expected,
                             bridge=bridge_stats.get("segment_to_userflow") or {},
                             expected_skipped=expected_skipped)
    users = _userflow_users(userflow_state)
    memberships = _memberships(userflow_state)
    events = _userflow_events(userflow_state)
    by_ref: Counter[str] = Counter()
    arrival_by_ref: dict[str, float] = {}
    # Userflow holds only the bridged tracks and the simulated activity: anything else came
    # back from Segment (an echo), from a call the bridge should have skipped, or from nowhere.
    allowed = {TRACK_EVENT_USERFLOW, ECHO_EVENT_USERFLOW,
               *(n for names in ACTIVITY_EVENTS.values() for n in names)}
    strays = Counter(str(e.get("name")) for e in events if e.get("name") not in allowed)
    for name, n in sorted(strays.items()):
        report.problems.append(f"unexpected event {name!r} x{n} in Userflow (echo?)")
    for event in events:
        attributes = event.get("attributes") or {}
        ref = attributes.get(REF_PROPERTY)
        if not isinstance(ref, str):
            continue  # simulated in-app activity, recorded by Userflow itself
        by_ref[ref] += 1
        arrived = parse_time(event.get("created_at") or event.get("time"))
        if arrived is not None:
            arrival_by_ref[ref] = arrived
        if attributes.get(BRIDGED_FROM[0]) != BRIDGED_FROM[1]:
            report.problems.append(f"event {ref} lacks the bridged_from marker")

    arrived = 0
    for call in plan.calls:
        user = users.get(call.user_id) if call.user_id is not None else None
        if call.skip is not None:
            # Skipped by design: nothing of it may reach Userflow.
            if by_ref.get(call.message_id, 0):
                report.problems.append(
                    f"{call.kind} {call.message_id} should be skipped ({call.skip}) but "
                    f"arrived in Userflow {by_ref[call.message_id]} time(s)")
            if call.anonymous_id is not None and call.anonymous_id in users:
                report.problems.append(
                    f"anonymous id {call.anonymous_id} ({call.skip}) became a Userflow user")
        elif call.kind == "track":
            n = by_ref.get(call.message_id, 0)
            expected_name = ECHO_EVENT_USERFLOW if call.echo else TRACK_EVENT_USERFLOW
            names = {str(e.get("name")) for e in events
                     if (e.get("attributes") or {}).get(REF_PROPERTY) == call.message_id}
            if n == 1 and names == {expected_name}:
                arrived += 1
                at = arrival_by_ref.get(call.message_id)
                if at is not None and call.message_id in sent_at:
                    report.latencies_ms.append((at - sent_at[call.message_id]) * 1000)
            elif n > 1:
                replayed = (" (the demo replayed it: the bridge delivered the replay)"
                            if call.message_id in replays.message_ids else "")
                report.problems.append(f"track {call.message_id} arrived {n} times{replayed}")
            elif n == 1:
                report.problems.append(
                    f"track {call.message_id} arrived as {sorted(names)}, not {expected_name}")
        elif call.kind == "identify":
            attributes = (user or {}).get("attributes") or {}
            if user is not None and attributes.get("email") == call.traits["email"]:
                arrived += 1
        elif call.kind == "group":
            membership = memberships.get((str(call.user_id), str(call.group_id)))
            if membership is not None:
                arrived += 1
                at = parse_time(membership.get("created_at"))
                if at is not None and call.message_id in sent_at:
                    report.latencies_ms.append((at - sent_at[call.message_id]) * 1000)
    report.arrived = arrived

    # Exactly once for upserts: one successful Userflow write per identify and group call
    # (a duplicate upsert leaves the same state behind, so only the write count shows it).
    forwarded = Counter(c.kind for c in plan.forwarded_calls)
    expected_user_writes = forwarded["identify"] + forwarded["group"]
    user_writes = _successful_writes(userflow_requests, "POST", "/users")
    event_writes = _successful_writes(userflow_requests, "POST", "/events")
    if user_writes != expected_user_writes:
        report.problems.append(
            f"{user_writes} successful POST /users for {expected_user_writes} identify+group calls")
    if event_writes != forwarded["track"]:
        report.problems.append(
            f"{event_writes} successful POST /events for {forwarded['track']} forwarded "
            "track calls")
    report.check_skips()
    return report


def expected_title_case_tracks(plan: DemoPlan) -> Counter[tuple[str, str]]:
    expected: Counter[tuple[str, str]] = Counter()
    for activity in plan.activities:
        for name in ACTIVITY_EVENTS[activity.activity]:
            expected[(activity.user_id, title_case(name))] += 1
    return expected


def account_userflow_to_segment(
    plan: DemoPlan,
    segment_state: Mapping[str, Any],
    userflow_source_id: str,
    app_source_id: str,
    bridge_stats: Mapping[str, Any],
) -> DirectionReport:
    """Each simulated Userflow event → exactly one Title Case track on the Userflow source;
    each event the bridge wrote to Userflow that came back by webhook → skipped as an echo
    and not on the Userflow source; nothing lands on the app source but what the app sent."""
    expected = expected_title_case_tracks(plan)
    # The Userflow events that reached the bridge: the simulated ones plus the echoes.
    report = DirectionReport("Userflow → Segment", sent=sum(expected.values()) + plan.echoes,
                             bridge=bridge_stats.get("userflow_to_segment") or {},
                             expected_skipped=plan.skips_userflow_to_segment)
    by_source = segment_state.get("events") or {}
    received = [e for e in by_source.get(userflow_source_id, []) if isinstance(e, Mapping)]
    actual: Counter[tuple[str, str]] = Counter()
    for event in received:
        key = (str(event.get("userId")), str(event.get("event")))
        actual[key] += 1
        if event.get("type") != "track":
            report.problems.append(f"unexpected {event.get('type')} on the Userflow source")
        if USERFLOW_MARKER_KEY not in (event.get("context") or {}):
            report.problems.append(f"{key} on the Userflow source lacks the bridge's marker")
        properties = event.get("properties") or {}
        if properties.get(BRIDGED_FROM[0]) == BRIDGED_FROM[1]:
            report.problems.append(
                f"{key} came from Segment (bridged_from=segment) and went back to Segment: "
                "an echo the bridge should have skipped")
        sent = parse_time(event.get("timestamp"))
        got = parse_time(event.get("receivedAt"))
        if sent is not None and got is not None:
            report.latencies_ms.append((got - sent) * 1000)
    for key, n in expected.items():
        report.arrived += min(n, actual.get(key, 0))
        if actual.get(key, 0) > n:
            report.problems.append(f"{key} arrived {actual[key]} times, expected {n}")
    unexpected = set(actual) - set(expected)
    for key in sorted(unexpected):
        report.problems.append(f"unexpected {key} x{actual[key]} on the Userflow source (echo?)")
    app_events = [e for e in by_source.get(app_source_id, []) if isinstance(e, Mapping)]
    if len(app_events) != len(plan.calls):
        report.problems.append(
            f"the app source holds {len(app_events)} events, the demo sent {len(plan.calls)}")
    report.check_skips()
    return report


def check_segment_deliveries(
    report: DirectionReport, successes: int, failures: int, expected: int
) -> None:
    """Segment's own delivery metrics agree with what the app sent: every event delivered to
    the bridge, none discarded or expired."""
    report.segment = SegmentCount(successes, failures)
    if failures:
        report.problems.append(
            f"Segment gave up on {failures} deliveries to the bridge (its delivery metrics: "
            "discarded or expired)")
    if successes != expected:
        report.problems.append(
            f"Segment reports {successes} events delivered to the bridge; the app sent "
            f"{expected} that its trigger covers")


def check_segment_volume(report: DirectionReport, counted: int) -> None:
    """Segment's own count on the Userflow source agrees with what the bridge delivered to its
    Tracking API. The Tracking API answers 200 to a write key no source has and discards the
    events, so a disagreement is a silent drop the bridge cannot see."""
    report.segment = SegmentCount(counted)
    delivered = int(report.bridge.get("delivered", 0))
    if counted != delivered:
        report.problems.append(
            f"silent drop: the bridge delivered {delivered} events to Segment's Tracking API, "
            f"Segment counted {counted} on the Userflow source (it answers 200 to a write key "
            "no source has and discards the events: look at the bridge's SEGMENT_WRITE_KEY)")


def format_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def format_skipped(skipped: Mapping[str, int]) -> str:
    """`0`, or the total with its reasons: `2 (no_user_id: 2)`."""
    total = sum(skipped.values())
    if not total:
        return "0"
    return f"{total} ({', '.join(f'{r}: {n}' for r, n in sorted(skipped.items()))})"


def format_segment_count(count: SegmentCount | None) -> str:
    if count is None:
        return "-"
    return f"{count.counted}" + (f" ({count.failed} failed)" if count.failed else "")


def render_table(reports: Sequence[DirectionReport]) -> str:
    """A short table: one row per direction, then what Segment's count and each skip reason
    that occurred mean. `delivered`: arrived in the target, as the emulators' state shows;
    `bridge delivered`: what the bridge's stats say it delivered; `Segment's count`: what
    Segment's Public API reports (see `SEGMENT_COUNT_MEANING`)."""
    header = ("direction", "sent", "delivered", "bridge delivered", "Segment's count",
              "skipped", "dead-lettered", "p50", "p99")
    rows = [header]
    for r in reports:
        rows.append((r.name, str(r.sent), str(r.arrived), str(r.bridge.get("delivered", "-")),
                     format_segment_count(r.segment),
                     format_skipped(r.skipped), str(r.dead_lettered),
                     format_ms(percentile(r.latencies_ms, 50)),
                     format_ms(percentile(r.latencies_ms, 99))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in reports:
        if r.segment is not None and r.name in SEGMENT_COUNT_MEANING:
            lines.append(f"  Segment's count, {r.name}: {SEGMENT_COUNT_MEANING[r.name]}")
    reasons = sorted({reason for r in reports for reason in r.skipped})
    for reason in reasons:
        lines.append(f"  skipped {reason}: {SKIP_REASONS.get(reason, 'see the bridge logs')}")
    return "\n".join(lines)
