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


def qualified_type(run: Run, resource: Resource) -> str:
    """The type part of the resource's URN as the engine writes it: every ancestor's type,
    outermost first, joined by `$` (the mocks keep only the parent's)."""
    by_urn = {r["urn"]: r for r in resources(run)}
    chain = [resource["type"]]
    parent = by_urn.get(resource["parent"])
    while parent is not None:
        chain.insert(0, parent["type"])
        parent = by_urn.get(parent["parent"])
    return "$".join(chain)


def urn(run: Run, qualified: str, name: str) -> str:
    return f"urn:pulumi:{run['stack']}::{PROJECT}::{qualified}::{name}"


def engine_urn(run: Run, resource: Resource) -> str:
    return urn(run, qualified_type(run, resource), resource["name"])


def alias_urns(run: Run, resource: Resource) -> set[str]:
    """The URNs the engine accepts as this resource's former ones, by the rule of Pulumi's
    aliases (https://www.pulumi.com/docs/iac/concepts/options/aliases/): a resource's own
    alias specs, and each of its parent's former URNs with this resource beneath it. Only
    the spec forms the program uses are resolved; any other fails loudly."""
    found: set[str] = set()
    for alias in resource["aliases"]:
        spec = alias.get("spec")
        assert spec is not None and set(spec) == {"noParent"} and spec["noParent"], alias
        found.add(urn(run, resource["type"], resource["name"]))
    by_urn = {r["urn"]: r for r in resources(run)}
    parent = by_urn.get(resource["parent"])
    if parent is not None:
        for former in alias_urns(run, parent):
            parent_type = former.split("::")[2]
            found.add(urn(run, f"{parent_type}${resource['type']}", resource["name"]))
    return found
