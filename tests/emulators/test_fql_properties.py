"""Property test of the FQL subset: any trigger built from the grammar parses, and evaluates
exactly as the expression it was built from."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.segment.fql import parse_trigger

VALUES = ["identify", "track", "group", "page", "Signed Up", 'quote " inside', "back\\slash"]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


comparisons = st.builds(
    lambda field, negated, value: (
        f"{field} {'!=' if negated else '='} {_quote(value)}",
        lambda event, f=field, n=negated, v=value: (event.get(f) == v) != n,
    ),
    st.sampled_from(["type", "event"]),
    st.booleans(),
    st.sampled_from(VALUES),
)


def _combine(children: Any) -> Any:
    def join(op: str, parts: list[tuple[str, Any]]) -> tuple[str, Any]:
        text = f" {op} ".join(f"({t})" for t, _ in parts)
        if op == "and":
            return text, lambda e: all(f(e) for _, f in parts)
        return text, lambda e: any(f(e) for _, f in parts)

    return st.builds(
        join, st.sampled_from(["and", "or"]), st.lists(children, min_size=2, max_size=3)
    )


triggers = st.recursive(comparisons, _combine, max_leaves=8)
events = st.fixed_dictionaries(
    {"type": st.sampled_from(VALUES)},
    optional={"event": st.sampled_from(VALUES)},
)


@settings(max_examples=200, deadline=None)
@given(trigger=triggers, event=events)
def test_parsed_triggers_evaluate_like_their_source(
    trigger: tuple[str, Any], event: dict[str, Any]
) -> None:
    text, expected = trigger

    assert parse_trigger(text).matches(event) is expected(event), json.dumps(event)
