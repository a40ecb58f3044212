"""Userflow attribute rules as pure functions: name and value validation, and the merge of
an `attributes` object (plain values and operation objects) into stored attributes.

From Userflow's API reference (https://userflow.com/docs/api, attributes): values are string,
number, boolean, null or lists of those; operation objects carry exactly one of
set/set_once/add/subtract/append/prepend/remove, optionally `data_type`
(string|boolean|number|datetime|list). Names: letters, digits, `_`, `-`, spaces.
Choice where the docs are silent: a plain `null` removes the attribute.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_\- ]{1,100}$")
OPERATIONS = ("set", "set_once", "add", "subtract", "append", "prepend", "remove")
DATA_TYPES = frozenset({"string", "boolean", "number", "datetime", "list"})


class InvalidAttribute(ValueError):
    """An attribute the real API would refuse; the message names it and says why."""


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool | int | float)


def _is_value(value: Any) -> bool:
    return _is_scalar(value) or (isinstance(value, list) and all(_is_scalar(v) for v in value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_data_type(name: str, data_type: Any, value: Any) -> None:
    if data_type is None:
        return
    if data_type not in DATA_TYPES:
        raise InvalidAttribute(f"attribute {name!r}: data_type must be one of {sorted(DATA_TYPES)}")
    ok = {
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "number": _is_number(value),
        "list": isinstance(value, list),
        "datetime": isinstance(value, str) and _is_iso_datetime(value),
    }[data_type]
    if not ok:
        raise InvalidAttribute(f"attribute {name!r}: value does not match data_type {data_type!r}")


def _is_iso_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def validate_attributes(attributes: Any) -> None:
    """Raise `InvalidAttribute` for anything outside the documented shapes."""
    if attributes is None:
        return
    if not isinstance(attributes, Mapping):
        raise InvalidAttribute("attributes must be an object")
    for name, value in attributes.items():
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise InvalidAttribute(
                f"attribute name {name!r} may only contain letters, digits, '_', '-' and spaces"
            )
        if isinstance(value, Mapping):
            operations = [op for op in OPERATIONS if op in value]
            unknown = set(value) - set(OPERATIONS) - {"data_type"}
            if unknown:
                raise InvalidAttribute(f"attribute {name!r}: unknown keys {sorted(unknown)}")
            if len(operations) != 1:
                raise InvalidAttribute(
                    f"attribute {name!r}: an operation object needs exactly one of {OPERATIONS}"
                )
            operand = value[operations[0]]
            if not _is_value(operand):
                raise InvalidAttribute(f"attribute {name!r}: unsupported value {operand!r}")
            if operations[0] in {"add", "subtract"} and not _is_number(operand):
                raise InvalidAttribute(f"attribute {name!r}: {operations[0]} needs a number")
            if operations[0] in {"set", "set_once"}:
                _check_data_type(name, value.get("data_type"), operand)
            elif value.get("data_type") is not None and value["data_type"] not in DATA_TYPES:
                raise InvalidAttribute(
                    f"attribute {name!r}: data_type must be one of {sorted(DATA_TYPES)}"
                )
        elif not _is_value(value):
            raise InvalidAttribute(
                f"attribute {name!r}: values are strings, numbers, booleans, null or lists"
            )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def merge_attributes(
    current: Mapping[str, Any], changes: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Apply validated `changes` to `current`; attributes not mentioned stay as they are."""
    merged = dict(current)
    for name, change in (changes or {}).items():
        if not isinstance(change, Mapping):
            if change is None:
                merged.pop(name, None)
            else:
                merged[name] = change
            continue
        existing = merged.get(name)
        if "set" in change:
            if change["set"] is None:
                merged.pop(name, None)
            else:
                merged[name] = change["set"]
        elif "set_once" in change:
            if name not in merged and change["set_once"] is not None:
                merged[name] = change["set_once"]
        elif "add" in change or "subtract" in change:
            base = existing if _is_number(existing) else 0
            delta = change["add"] if "add" in change else -change["subtract"]
            merged[name] = base + delta
        elif "append" in change:
            merged[name] = _as_list(existing) + _as_list(change["append"])
        elif "prepend" in change:
            merged[name] = _as_list(change["prepend"]) + _as_list(existing)
        elif "remove" in change:
            removed = _as_list(change["remove"])
            merged[name] = [item for item in _as_list(existing) if item not in removed]
    return merged
