"""The demo's books: what each side really received, per direction, against the plan, and the
table the demo prints."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# The skip reasons are the bridge's own names, as its stats report them.
from bridge_code.ingest import SKIP_REPLAY
from bridge_code.mapping import title_case
from sandbox.traffic import (
    ACTIVITY_EVENTS,
    BRIDGED_FROM,
    ECHO_EVENT_USERFLOW,
    NO_REPLAYS,
    REF_PROPERTY,
    SKIP_REASONS,
    TRACK_EVENT_USERFLOW,
    USERFLOW_MARKER_KEY,
    DemoPlan,
    Replays,
)

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
    replays: Replays = NO_REPLAYS,
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
