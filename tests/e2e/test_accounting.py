"""The demo's exactly-once accounting: a perfect run passes, every way of falling short fails."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from bridge_code.mapping import title_case
from sandbox.stack_traffic import (
    ACTIVITY_EVENTS,
    TRACK_EVENT_USERFLOW,
    DemoPlan,
    account_segment_to_userflow,
    account_userflow_to_segment,
    percentile,
    plan_traffic,
    render_table,
)

T0 = 1_800_000_000.0
APP, UF = "src_app", "src_userflow"


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def perfect_userflow(plan: DemoPlan) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What a correct bridge leaves in the Userflow emulator: one write per call."""
    users: dict[str, dict[str, Any]] = {}
    memberships, events, requests = [], [], []
    for call in plan.calls:
        user = users.setdefault(call.user_id, {"id": call.user_id, "attributes": {}})
        if call.kind == "identify":
            user["attributes"].update({k: v for k, v in call.traits.items() if k != "createdAt"})
            requests.append({"method": "POST", "path": "/users", "status": 200})
        elif call.kind == "group":
            memberships.append({"user_id": call.user_id, "group_id": call.group_id,
                                "created_at": _iso(T0 + 0.05)})
            requests.append({"method": "POST", "path": "/users", "status": 200})
        else:
            events.append({"name": TRACK_EVENT_USERFLOW, "user_id": call.user_id,
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


SENT = {c.message_id: T0 for c in plan_traffic(6, 1).calls}


def test_plan_is_deterministic_and_sized() -> None:
    a, b, c = plan_traffic(6, 1), plan_traffic(6, 1), plan_traffic(6, 2)
    assert a == b
    assert a.run_id != c.run_id
    assert (a.count("identify"), a.count("track"), a.count("group")) == (6, 6, 6)
    assert len(a.user_ids) == 6
    assert a.userflow_events == 6 * 2 + 3  # a flow each (2 events), every other a task
    assert len({c.message_id for c in a.calls}) == len(a.calls)


def test_perfect_run_is_exactly_once_both_ways() -> None:
    plan = plan_traffic(6, 1)
    state, requests = perfect_userflow(plan)
    s2u = account_segment_to_userflow(plan, SENT, state, requests, {})
    u2s = account_userflow_to_segment(plan, perfect_segment(plan), UF, APP, {})
    assert s2u.ok and s2u.arrived == s2u.sent == 18, s2u.problems
    assert u2s.ok and u2s.arrived == u2s.sent == 15, u2s.problems
    assert round(percentile(s2u.latencies_ms, 50) or 0) in (50, 100)
    assert round(percentile(u2s.latencies_ms, 99) or 0) == 200


def test_duplicate_track_in_userflow_fails() -> None:
    plan = plan_traffic(6, 1)
    state, requests = perfect_userflow(plan)
    state["events"].append(copy.deepcopy(state["events"][0]))
    requests.append({"method": "POST", "path": "/events", "status": 201})
    report = account_segment_to_userflow(plan, SENT, state, requests, {})
    assert not report.ok
    assert any("arrived 2 times" in p for p in report.problems)


def test_duplicate_upsert_shows_only_in_the_write_count() -> None:
    plan = plan_traffic(6, 1)
    state, requests = perfect_userflow(plan)
    requests.append({"method": "POST", "path": "/users", "status": 200})
    report = account_segment_to_userflow(plan, SENT, state, requests, {})
    assert not report.ok
    assert any("POST /users" in p for p in report.problems)


def test_an_echo_into_userflow_fails() -> None:
    plan = plan_traffic(6, 1)
    state, requests = perfect_userflow(plan)
    state["events"].append({"name": "Flow Started", "user_id": plan.user_ids[0],
                            "attributes": {}, "created_at": _iso(T0)})
    report = account_segment_to_userflow(plan, SENT, state, requests, {})
    assert not report.ok
    assert any("'Flow Started'" in p and "echo" in p for p in report.problems)


def test_missing_membership_and_unmarked_event_fail() -> None:
    plan = plan_traffic(6, 1)
    state, requests = perfect_userflow(plan)
    state["memberships"].pop()
    state["events"][0]["attributes"].pop("bridged_from")
    report = account_segment_to_userflow(plan, SENT, state, requests, {})
    assert report.arrived == report.sent - 1
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
        report = account_userflow_to_segment(plan, state, UF, APP, {})
        assert not report.ok
        assert any(expected in p for p in report.problems), report.problems


def test_table_shows_bridge_skips_and_dead_letters() -> None:
    plan = plan_traffic(2, 3)
    state, requests = perfect_userflow(plan)
    stats = {"segment_to_userflow": {"dead_lettered": 1, "skipped": {"echo": 4}}}
    report = account_segment_to_userflow(plan, SENT, state, requests, stats)
    table = render_table([report])
    assert "4 echo" in table
    assert report.dead_lettered == 1
    assert table.splitlines()[2].split()[3:5] == ["6", "6"]


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
