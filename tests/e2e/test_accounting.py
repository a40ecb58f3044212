"""The demo's exactly-once accounting: a perfect run passes, every way of falling short fails."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from bridge_code.mapping import title_case
from sandbox.accounting import (
    account_segment_to_userflow,
    account_userflow_to_segment,
    percentile,
    render_table,
)
from sandbox.traffic import (
    ACTIVITY_EVENTS,
    ANONYMOUS_EVENT_USERFLOW,
    ANONYMOUS_TRACKS,
    ECHO_EVENT_USERFLOW,
    REF_PROPERTY,
    TRACK_EVENT_USERFLOW,
    DemoPlan,
    Replays,
    capture_delivery,
    plan_traffic,
    redelivered_after_lost_answer,
    replayed_events,
)

T0 = 1_800_000_000.0
APP, UF = "src_app", "src_userflow"


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def perfect_userflow(plan: DemoPlan) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What a correct bridge leaves in the Userflow emulator: one write per forwarded call,
    nothing for a call it must skip."""
    users: dict[str, dict[str, Any]] = {}
    memberships, events, requests = [], [], []
    for call in plan.calls:
        if call.skip is not None:
            continue
        assert call.user_id is not None
        user = users.setdefault(call.user_id, {"id": call.user_id, "attributes": {}})
        if call.kind == "identify":
            user["attributes"].update({k: v for k, v in call.traits.items() if k != "createdAt"})
            requests.append({"method": "POST", "path": "/users", "status": 200})
        elif call.kind == "group":
            memberships.append({"user_id": call.user_id, "group_id": call.group_id,
                                "created_at": _iso(T0 + 0.05)})
            requests.append({"method": "POST", "path": "/users", "status": 200})
        else:
            name = ECHO_EVENT_USERFLOW if call.echo else TRACK_EVENT_USERFLOW
            events.append({"name": name, "user_id": call.user_id,
                           "attributes": {**call.properties, "bridged_from": "segment"},
                           "created_at": _iso(T0 + 0.1)})
            requests.append({"method": "POST", "path": "/events", "status": 201})
    return {"users": list(users.values()), "memberships": memberships, "events": events}, requests


def perfect_segment(plan: DemoPlan) -> dict[str, Any]:
    tracks = [
        {"type": "track", "userId": a.user_id, "event": title_case(name),
         "context": {"userflowBridge": {"direction": "userflow-to-segment"}},
         "timestamp": _iso(T0), "receivedAt": _iso(T0 + 0.2)}
        for a in plan.activities for name in ACTIVITY_EVENTS[a.activity]
    ]
    return {"events": {APP: [{"type": c.kind} for c in plan.calls], UF: tracks}}


def perfect_stats(plan: DemoPlan) -> dict[str, Any]:
    """The bridge's stats after a correct run: it skipped exactly the designed events."""
    return {"segment_to_userflow": {"skipped": {"no_user_id": ANONYMOUS_TRACKS}},
            "userflow_to_segment": {"skipped": {"echo": 1}}}


SENT = {c.message_id: T0 for c in plan_traffic(6, 1).calls}


def test_plan_is_deterministic_and_sized() -> None:
    a, b, c = plan_traffic(6, 1), plan_traffic(6, 1), plan_traffic(6, 2)
    assert a == b
    assert a.run_id != c.run_id
    # a track per user, plus the designed skips: anonymous tracks and one echo-bound track
    assert (a.count("identify"), a.count("track"), a.count("group")) == (
        6, 6 + ANONYMOUS_TRACKS + 1, 6)
    assert len(a.user_ids) == 6
    assert a.userflow_events == 6 * 2 + 3  # a flow each (2 events), every other a task
    assert len({c.message_id for c in a.calls}) == len(a.calls)
    assert a.skips_segment_to_userflow == {"no_user_id": ANONYMOUS_TRACKS}
    assert a.skips_userflow_to_segment == {"echo": 1}
    anonymous = [c for c in a.calls if c.skip == "no_user_id"]
    assert all(c.user_id is None and c.anonymous_id for c in anonymous)
    assert len(a.forwarded_calls) == 6 * 3 + 1


def test_perfect_run_is_exactly_once_both_ways() -> None:
    plan = plan_traffic(6, 1)
    state, requests = perfect_userflow(plan)
    stats = perfect_stats(plan)
    s2u = account_segment_to_userflow(plan, SENT, state, requests, stats)
    u2s = account_userflow_to_segment(plan, perfect_segment(plan), UF, APP, stats)
    assert s2u.ok, s2u.problems
    assert (s2u.sent, s2u.arrived, s2u.skipped) == (18 + ANONYMOUS_TRACKS + 1, 19,
                                                    {"no_user_id": ANONYMOUS_TRACKS})
    assert u2s.ok, u2s.problems
    assert (u2s.sent, u2s.arrived, u2s.skipped) == (16, 15, {"echo": 1})
    assert round(percentile(s2u.latencies_ms, 50) or 0) in (50, 100)
    assert round(percentile(u2s.latencies_ms, 99) or 0) == 200


def test_duplicate_track_in_userflow_fails() -> None:
    plan = plan_traffic(6, 1)
    state, requests = perfect_userflow(plan)
    state["events"].append(copy.deepcopy(state["events"][0]))
    requests.append({"method": "POST", "path": "/events", "status": 201})
    report = account_segment_to_userflow(plan, SENT, state, requests, perfect_stats(plan))
    assert not report.ok
    assert any("arrived 2 times" in p for p in report.problems)


def test_duplicate_upsert_shows_only_in_the_write_count() -> None:
    plan = plan_traffic(6, 1)
    state, requests = perfect_userflow(plan)
    requests.append({"method": "POST", "path": "/users", "status": 200})
    report = account_segment_to_userflow(plan, SENT, state, requests, perfect_stats(plan))
    assert not report.ok
    assert any("POST /users" in p for p in report.problems)


def test_an_echo_into_userflow_fails() -> None:
    plan = plan_traffic(6, 1)
    state, requests = perfect_userflow(plan)
    state["events"].append({"name": "Flow Started", "user_id": plan.user_ids[0],
                            "attributes": {}, "created_at": _iso(T0)})
    report = account_segment_to_userflow(plan, SENT, state, requests, perfect_stats(plan))
    assert not report.ok
    assert any("'Flow Started'" in p and "echo" in p for p in report.problems)


def test_missing_membership_and_unmarked_event_fail() -> None:
    plan = plan_traffic(6, 1)
    state, requests = perfect_userflow(plan)
    state["memberships"].pop()
    state["events"][0]["attributes"].pop("bridged_from")
    report = account_segment_to_userflow(plan, SENT, state, requests, perfect_stats(plan))
    assert report.arrived == report.sent - ANONYMOUS_TRACKS - 1  # the anonymous are skipped
    assert not report.ok
    assert any("bridged_from" in p for p in report.problems)


def test_echo_duplicate_and_app_source_leak_fail_the_userflow_direction() -> None:
    plan = plan_traffic(6, 1)
    mutations: tuple[tuple[Callable[[dict[str, Any]], None], str], ...] = (
        (lambda s: s["events"][UF].append({**s["events"][UF][0], "event": "Report Created"}),
         "echo"),
        (lambda s: s["events"][UF].append(dict(s["events"][UF][0])), "times"),
        (lambda s: s["events"][APP].append({"type": "track"}), "app source"),
    )
    for mutate, expected in mutations:
        state = perfect_segment(plan)
        mutate(state)
        report = account_userflow_to_segment(plan, state, UF, APP, perfect_stats(plan))
        assert not report.ok
        assert any(expected in p for p in report.problems), report.problems


def test_table_shows_bridge_skips_with_reasons_and_dead_letters() -> None:
    plan = plan_traffic(2, 3)
    state, requests = perfect_userflow(plan)
    stats = {"segment_to_userflow": {"dead_lettered": 1,
                                     "skipped": {"no_user_id": 2, "echo": 4}}}
    report = account_segment_to_userflow(plan, SENT, state, requests, stats)
    table = render_table([report])
    row = table.splitlines()[2]
    assert "6 (echo: 4, no_user_id: 2)" in row
    assert report.dead_lettered == 1
    # sent: 2 users x 3 calls + the designed skips; delivered: all but the anonymous tracks
    assert row.split()[3:5] == [str(6 + ANONYMOUS_TRACKS + 1), "7"]
    # each reason that occurred is explained under the table
    assert any(line.strip().startswith("skipped no_user_id:") for line in table.splitlines())
    # AND four echoes where none were designed fail the run
    assert not report.ok
    assert any("skipped 4 as echo, expected 0" in p for p in report.problems)


def test_a_skipped_anonymous_track_arriving_in_userflow_fails() -> None:
    plan = plan_traffic(6, 1)
    state, requests = perfect_userflow(plan)
    anonymous = next(c for c in plan.calls if c.skip == "no_user_id")
    # GIVEN a bridge that forwarded an anonymous track under its anonymous id
    state["events"].append({"name": ANONYMOUS_EVENT_USERFLOW, "user_id": anonymous.anonymous_id,
                            "attributes": {**anonymous.properties, "bridged_from": "segment"},
                            "created_at": _iso(T0)})
    state["users"].append({"id": anonymous.anonymous_id, "attributes": {}})
    requests.append({"method": "POST", "path": "/events", "status": 201})
    report = account_segment_to_userflow(plan, SENT, state, requests, perfect_stats(plan))
    # THEN the run fails, naming the call that should have been skipped
    assert not report.ok
    assert any(anonymous.message_id in p and "should be skipped" in p for p in report.problems)
    assert any("became a Userflow user" in p for p in report.problems)
    assert any("POST /events" in p for p in report.problems)


def test_skip_counts_must_equal_the_designed_skips() -> None:
    plan = plan_traffic(6, 1)
    state, requests = perfect_userflow(plan)
    segment = perfect_segment(plan)
    for s2u_skips, u2s_skips, expected in (
        ({"no_user_id": ANONYMOUS_TRACKS - 1}, {"echo": 1}, "as no_user_id"),
        ({"no_user_id": ANONYMOUS_TRACKS + 1}, {"echo": 1}, "as no_user_id"),
        ({"no_user_id": ANONYMOUS_TRACKS, "invalid": 1}, {"echo": 1}, "as invalid"),
        ({"no_user_id": ANONYMOUS_TRACKS}, {}, "as echo"),
        ({"no_user_id": ANONYMOUS_TRACKS}, {"echo": 2}, "as echo"),
    ):
        stats = {"segment_to_userflow": {"skipped": s2u_skips},
                 "userflow_to_segment": {"skipped": u2s_skips}}
        reports = (account_segment_to_userflow(plan, SENT, state, requests, stats),
                   account_userflow_to_segment(plan, segment, UF, APP, stats))
        assert not all(r.ok for r in reports), (s2u_skips, u2s_skips)
        problems = [p for r in reports for p in r.problems]
        assert any(expected in p for p in problems), problems


def test_an_echo_that_reaches_segment_fails() -> None:
    plan = plan_traffic(6, 1)
    echo = next(c for c in plan.calls if c.echo)
    segment = perfect_segment(plan)
    # GIVEN a bridge that forwarded the event it had itself written to Userflow
    segment["events"][UF].append({
        "type": "track", "userId": echo.user_id, "event": "Flow Completed",
        "properties": {**echo.properties, "bridged_from": "segment"},
        "context": {"userflowBridge": {"direction": "userflow-to-segment"}},
        "timestamp": _iso(T0), "receivedAt": _iso(T0 + 0.2)})
    report = account_userflow_to_segment(plan, segment, UF, APP, perfect_stats(plan))
    assert not report.ok
    assert any("should have skipped" in p for p in report.problems)
    assert any("arrived 2 times" in p for p in report.problems)


def test_the_echo_bound_track_must_arrive_in_userflow_under_its_own_name() -> None:
    plan = plan_traffic(6, 1)
    state, requests = perfect_userflow(plan)
    echo_ref = next(c.message_id for c in plan.calls if c.echo)
    event = next(e for e in state["events"] if e["attributes"][REF_PROPERTY] == echo_ref)
    event["name"] = TRACK_EVENT_USERFLOW
    report = account_segment_to_userflow(plan, SENT, state, requests, perfect_stats(plan))
    assert not report.ok and report.arrived == report.sent - ANONYMOUS_TRACKS - 1
    assert any("not flow_completed" in p for p in report.problems)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0


def _attempt(delivery: str, attempt: int, status: int | None, ids: list[str],
             destination: str = "dst_bridge", **extra: Any) -> dict[str, Any]:
    """One entry of the Segment emulator's delivery log."""
    outcome = "success" if status is not None and 200 <= status < 300 else "retry"
    return {"delivery_id": delivery, "attempt": attempt, "status": status, "outcome": outcome,
            "destination_id": destination, "message_ids": ids, "url": "http://b/segment",
            "body": '{"messageId":"' + ids[0] + '"}', "signature": "ab" * 20, **extra}


def test_a_replay_is_expected_as_a_skip_and_counted_in_sent() -> None:
    plan = plan_traffic(6, 1)
    state, requests = perfect_userflow(plan)
    track = next(c for c in plan.forwarded_calls if c.kind == "track" and not c.echo)
    replays = Replays(on_purpose=1, message_ids=(track.message_id,))
    stats = {"segment_to_userflow": {"skipped": {"no_user_id": ANONYMOUS_TRACKS, "replay": 1}}}
    # GIVEN a bridge that skipped the replay THEN the run is exactly once
    report = account_segment_to_userflow(plan, SENT, state, requests, stats, replays)
    assert report.ok, report.problems
    assert (report.sent, report.arrived) == (len(plan.calls) + 1, len(plan.forwarded_calls))
    assert "3 (no_user_id: 2, replay: 1)" in render_table([report]).splitlines()[2]
    # AND a bridge that did not count it as a replay fails the run
    missed = account_segment_to_userflow(plan, SENT, state, requests, perfect_stats(plan),
                                         replays)
    assert not missed.ok
    assert any("skipped 0 as replay, expected 1" in p for p in missed.problems)
    # AND a replay skip nobody sent fails it too
    stray = account_segment_to_userflow(plan, SENT, state, requests, stats)
    assert any("skipped 1 as replay, expected 0" in p for p in stray.problems)


def test_a_replay_delivered_to_userflow_fails_naming_the_replay() -> None:
    plan = plan_traffic(6, 1)
    state, requests = perfect_userflow(plan)
    track = next(c for c in plan.forwarded_calls if c.kind == "track" and not c.echo)
    # GIVEN a bridge that delivered the replayed track a second time (and did not skip it)
    event = next(e for e in state["events"]
                 if e["attributes"].get(REF_PROPERTY) == track.message_id)
    state["events"].append(copy.deepcopy(event))
    requests.append({"method": "POST", "path": "/events", "status": 201})
    replays = Replays(on_purpose=1, message_ids=(track.message_id,))
    report = account_segment_to_userflow(plan, SENT, state, requests, perfect_stats(plan),
                                         replays)
    assert not report.ok
    assert any(track.message_id in p and "replayed" in p for p in report.problems)
    assert any("POST /events" in p for p in report.problems)


def test_capture_takes_an_accepted_track_delivery_to_the_bridge_only() -> None:
    plan = plan_traffic(6, 1)
    identify = next(c for c in plan.calls if c.kind == "identify")
    track = next(c for c in plan.forwarded_calls if c.kind == "track" and not c.echo)
    echo = next(c for c in plan.calls if c.echo)
    anonymous = next(c for c in plan.calls if c.skip is not None)
    log = [
        _attempt("d0", 1, 200, [track.message_id], destination="dst_other"),
        _attempt("d1", 1, 503, [track.message_id]),
        _attempt("d2", 1, 200, [anonymous.message_id]),
        _attempt("d3", 1, 200, [echo.message_id]),
        _attempt("d4", 1, 200, [identify.message_id]),
        _attempt("d5", 1, 200, [track.message_id], signature=None),
        _attempt("d6", 2, 200, [track.message_id]),
    ]
    captured = capture_delivery(plan, log, "dst_bridge")
    assert captured is not None
    assert captured.message_ids == (track.message_id,)
    assert captured.body == ('{"messageId":"' + track.message_id + '"}').encode()
    # without a track delivery, an accepted identify will do; with none at all, nothing
    fallback = capture_delivery(plan, log[:5], "dst_bridge")
    assert fallback is not None and fallback.message_ids == (identify.message_id,)
    assert capture_delivery(plan, log[:4], "dst_bridge") is None


def test_segment_retries_after_a_lost_answer_are_expected_replays() -> None:
    plan = plan_traffic(6, 1)
    a, b, c, d = (x.message_id for x in plan.forwarded_calls[:4])
    anonymous = next(c.message_id for c in plan.calls if c.skip is not None)
    log = [
        # answered at once: no redelivery
        _attempt("d1", 1, 200, [a]),
        # a 503 then a 200: the bridge released its claim, the retry was accepted, no replay
        _attempt("d2", 1, 503, [b]), _attempt("d2", 2, 200, [b]),
        # answer lost, then 429 (first copy still pending), then 200: one replay
        _attempt("d3", 1, None, [c]), _attempt("d3", 2, 429, [c]), _attempt("d3", 3, 200, [c]),
        # a batch: answer lost, then lost again, then 200: two replays of its forwarded event
        # (the anonymous one is skipped as no_user_id, never as replay)
        _attempt("d4", 2, None, [d, anonymous]), _attempt("d4", 1, None, [d, anonymous]),
        _attempt("d4", 3, 200, [d, anonymous]),
        # another destination's retries are not the bridge's
        _attempt("d5", 1, None, [a], destination="dst_other"),
        _attempt("d5", 2, 200, [a], destination="dst_other"),
    ]
    assert redelivered_after_lost_answer(plan, log, "dst_bridge") == 1 + 2
    assert redelivered_after_lost_answer(plan, log[:3], "dst_bridge") == 0
    assert replayed_events(plan, [d, anonymous]) == 1
