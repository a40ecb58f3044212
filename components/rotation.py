"""Rotation with an overlap, shared by the providers of the three rotatable secrets.

Every rotation is one config change (a number bumped) followed by `pulumi up` runs that each
advance it one step once its wait is over; `pulumi preview` shows an update while a step is
due or waiting, and no change once the rotation is complete. The wait between steps is
``rotationOverlapSeconds``, which the config holds at or above the bridge's secret cache TTL:
a step never takes a secret away from (or hands a new one to) Segment or Userflow before
every bridge function can have re-read its Secrets Manager secret.

The bridge's secrets hold a comma-separated list (the bridge's ``SecretStore`` splits it):
the secret in use first, then any other the bridge must still accept during an overlap.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pulumi.dynamic import DiffResult

from components.provider import is_unknown

DEFAULT_OVERLAP_SECONDS = 900
# What a bridge secret list is split on: never part of a generated secret, a write key or a
# Userflow secret (hex / alphanumeric).
SEPARATOR = ","


def now() -> float:
    """Wall-clock seconds: rotation deadlines are kept in state and compared across runs."""
    return time.time()


def accepted(*values: Any) -> str | None:
    """The bridge's secret string: the values in order, blanks and repeats left out."""
    kept: list[str] = []
    for value in values:
        if isinstance(value, str) and value and value not in kept:
            if SEPARATOR in value:
                raise ValueError("a secret value contains a comma, which the bridge splits on")
            kept.append(value)
    return SEPARATOR.join(kept) or None


def is_due(deadline: Any, at: float) -> bool:
    """Whether a step scheduled for `deadline` (epoch seconds in state) may run at `at`."""
    return isinstance(deadline, int | float) and not isinstance(deadline, bool) and deadline <= at


def overlap_seconds(inputs: Mapping[str, Any]) -> float:
    value = inputs.get("rotation_overlap_seconds")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return float(DEFAULT_OVERLAP_SECONDS)
    return float(value)


def overlap_problems(inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """check(): the overlap, when given and known, is a whole number of seconds >= 0."""
    value = inputs.get("rotation_overlap_seconds")
    if value is None or is_unknown(value):
        return []
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 \
            or int(value) != value:
        return [("rotation_overlap_seconds",
                 "rotation_overlap_seconds must be a whole number of seconds >= 0")]
    return []


def with_step_due(result: DiffResult, due: bool) -> DiffResult:
    """The pure diff, plus an update when a rotation step is waiting to run."""
    if not due or result.changes:
        return result
    return DiffResult(changes=True, replaces=result.replaces,
                      delete_before_replace=result.delete_before_replace)


def step_pending(olds: Mapping[str, Any], deadline_keys: tuple[str, ...],
                 rotation_key: str, news: Mapping[str, Any]) -> bool:
    """Whether a later `up` still has a rotation step to run: a deadline is set in state,
    or the rotation number asked for is not the one completed."""
    if any(olds.get(key) is not None for key in deadline_keys):
        return True
    wanted = news.get(rotation_key)
    return wanted is not None and wanted != olds.get(rotation_key)
