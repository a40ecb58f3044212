"""The demo's comparison of Segment's own counts with the bridge's, as pure functions: a
disagreement is a problem that says which way and where to look; agreement is none."""

from __future__ import annotations

from sandbox.accounting import (
    DirectionReport,
    SegmentCount,
    check_segment_deliveries,
    check_segment_volume,
    render_table,
)


def _u2s(delivered: int) -> DirectionReport:
    return DirectionReport("Userflow → Segment", sent=delivered,
                           bridge={"delivered": delivered, "skipped": {}})


def test_volume_agreeing_with_the_bridge_is_no_problem() -> None:
    report = _u2s(7)
    check_segment_volume(report, 7)
    assert report.problems == [] and report.segment == SegmentCount(7)


def test_volume_below_what_the_bridge_delivered_is_a_silent_drop() -> None:
    report = _u2s(7)
    check_segment_volume(report, 2)
    [problem] = report.problems
    assert problem.startswith("silent drop: the bridge delivered 7")
    assert "counted 2" in problem and "SEGMENT_WRITE_KEY" in problem


def test_delivery_failures_or_a_short_count_are_problems() -> None:
    report = DirectionReport("Segment → Userflow", sent=10)
    check_segment_deliveries(report, successes=8, failures=2, expected=10)
    assert len(report.problems) == 2
    assert "gave up on 2" in report.problems[0] and "8 events delivered" in report.problems[1]
    clean = DirectionReport("Segment → Userflow", sent=10)
    check_segment_deliveries(clean, successes=10, failures=0, expected=10)
    assert clean.problems == []


def test_the_table_shows_segments_count_beside_the_bridges() -> None:
    report = _u2s(7)
    check_segment_volume(report, 0)
    lines = render_table([report]).splitlines()
    header, row = lines[0], lines[2]
    for column, value in (("bridge delivered", "7"), ("Segment's count", "0")):
        assert row[header.index(column):].split()[0] == value
    assert any("Segment's count, Userflow → Segment" in line for line in lines)
