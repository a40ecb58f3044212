"""Small readers over a recorded stack run (see harness.py): resources by type, inputs with
Pulumi's secret markers, and the config the run used."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.stacks.harness import PROJECT, SECRET_SIG

# Pulumi's key for a special value (secret, asset, archive, resource reference).
SPECIAL_SIG_KEY = "4dabf18193072939515e22adb298388d"

Resource = dict[str, Any]
Run = dict[str, Any]


def resources(run: Run, typ: str | None = None) -> list[Resource]:
    return [r for r in run["resources"] if typ is None or r["type"] == typ]


def one(run: Run, typ: str, name: str) -> Resource:
    found = [r for r in resources(run, typ) if r["name"] == name]
    assert len(found) == 1, f"{typ} {name}: {len(found)} registrations"
    return found[0]


def inputs(resource: Resource) -> dict[str, Any]:
    """The resource's inputs without the dynamic providers' pickled provider."""
    return {k: v for k, v in resource["inputs"].items() if k != "__provider"}


def is_secret(node: Any) -> bool:
    return isinstance(node, dict) and node.get(SPECIAL_SIG_KEY) == SECRET_SIG


def plaintext_strings(node: Any) -> Iterator[str]:
    """Every string in `node` that is not inside a Pulumi secret."""
    if is_secret(node):
        return
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from plaintext_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from plaintext_strings(value)


def config_value(run: Run, key: str) -> str | None:
    value: str | None = run["config"].get(f"{PROJECT}:{key}")
    return value


def environment(run: Run) -> str:
    value = config_value(run, "environment")
    assert value is not None
    return value


def policy(resource: Resource) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(resource["inputs"]["policy"])
    return document
