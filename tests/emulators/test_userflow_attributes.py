"""Userflow attribute rules as pure functions (the API tests cover them over HTTP too)."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.userflow.attributes import (
    InvalidAttribute,
    merge_attributes,
    validate_attributes,
)


@pytest.mark.parametrize(
    ("current", "changes", "expected"),
    [
        ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ({"a": 1}, {"a": None}, {}),
        ({"a": 1}, {"a": {"set": None}}, {}),
        ({}, {"n": {"add": 1.5}}, {"n": 1.5}),
        ({"n": "text"}, {"n": {"add": 2}}, {"n": 2}),  # a non-number counts from zero
        ({"l": "x"}, {"l": {"append": "y"}}, {"l": ["x", "y"]}),
        ({"l": ["x", "y", "x"]}, {"l": {"remove": ["x"]}}, {"l": ["y"]}),
        ({"s": "old"}, {"s": {"set_once": "new"}}, {"s": "old"}),
        ({}, {"s": {"set_once": "new"}}, {"s": "new"}),
        ({"a": 1}, None, {"a": 1}),
    ],
)
def test_merge(current: dict[str, Any], changes: Any, expected: dict[str, Any]) -> None:
    assert merge_attributes(current, changes) == expected


def test_merge_does_not_mutate_its_input() -> None:
    current = {"l": ["x"]}

    merge_attributes(current, {"l": {"append": "y"}})

    assert current == {"l": ["x"]}


@pytest.mark.parametrize(
    "attributes",
    [
        {"when": {"set": "2024-13-45", "data_type": "datetime"}},
        {"flag": {"set": "yes", "data_type": "boolean"}},
        {"n": {"subtract": True}},
        {"": 1},
        {"x" * 101: 1},
    ],
)
def test_invalid(attributes: Any) -> None:
    with pytest.raises(InvalidAttribute):
        validate_attributes(attributes)


@pytest.mark.parametrize(
    "attributes",
    [
        None,
        {"name": "Ann", "age": 3, "vip": False, "nothing": None, "tags": ["a", 1, True, None]},
        {"when": {"set": "2024-01-02T03:04:05Z", "data_type": "datetime"}},
        {"list": {"set": ["a"], "data_type": "list"}},
        {"n": {"add": 1, "data_type": "number"}},
    ],
)
def test_valid(attributes: Any) -> None:
    validate_attributes(attributes)
