"""The config keys of this program: how `Pulumi.yaml`'s typed `config:` block declares each (type,
secret, default), how a stack's raw value is read against its declaration (`Reader`: every
failure recorded, every key asked for noted), and which of the stack's keys nobody reads.
The rules that combine keys into a `StackConfig` are `components/config.py`.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml

from components.api_http import check_base_url
from components.project import PROJECT

NAMESPACE = PROJECT
PROJECT_ROOT = Path(__file__).resolve().parent.parent


# -- Pulumi.yaml's declarations -----------------------------------------------------------------


@dataclass(frozen=True)
class Declaration:
    """One key of Pulumi.yaml's `config:` block."""

    type: str  # string | integer | boolean | array
    default: str | None  # as the engine hands it to the program; None: the key is required
    secret: bool = False


def engine_string(value: Any) -> str:
    """A config value as the engine hands it to the program: scalars as text, lists as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def parse_declarations(document: Mapping[str, Any]) -> dict[str, Declaration]:
    """The project's own keys (no namespace in Pulumi.yaml) from a parsed Pulumi.yaml."""
    found: dict[str, Declaration] = {}
    for key, spec in (document.get("config") or {}).items():
        if ":" in key or not isinstance(spec, dict):
            continue  # another namespace's value (e.g. aws:region), not one of our keys
        default = spec.get("default")
        found[key] = Declaration(
            type=str(spec.get("type", "string")),
            default=None if default is None else engine_string(default),
            secret=bool(spec.get("secret", False)),
        )
    return found


@functools.cache
def declarations(project_root: Path = PROJECT_ROOT) -> Mapping[str, Declaration]:
    """Every key this program reads, as `Pulumi.yaml` declares it."""
    document = yaml.safe_load((project_root / "Pulumi.yaml").read_text(encoding="utf-8"))
    return parse_declarations(document)


# -- problems -------------------------------------------------------------------------------------


def qualified(key: str) -> str:
    return key if ":" in key else f"{NAMESPACE}:{key}"


@dataclass(frozen=True)
class Problem:
    key: str
    allowed: str

    def __str__(self) -> str:
        return f"config {qualified(self.key)}: {self.allowed}"



T = TypeVar("T")
N = TypeVar("N", int, float)


@dataclass
class Reader:
    """Typed access to the raw (string) config values. Each key's default comes from its
    declaration; each failure is recorded (the default stands in) so one run reports all;
    every key asked for is recorded, so the keys nobody asked for are the unknown ones."""

    raw: Mapping[str, str]
    declared: Mapping[str, Declaration]
    problems: list[Problem] = field(default_factory=list)
    asked: set[str] = field(default_factory=set)

    def fail(self, key: str, allowed: str) -> None:
        self.problems.append(Problem(key, allowed))

    def failed(self, *keys: str) -> bool:
        return any(p.key in keys for p in self.problems)

    def text(self, key: str) -> str | None:
        """The stack's value, else the declared default; None (or "") when neither is set."""
        self.asked.add(key)
        value = self.raw.get(key)
        if value in (None, ""):
            value = self.declared[key].default  # KeyError: a key Pulumi.yaml doesn't declare
        return value or None

    def boolean(self, key: str) -> bool:
        value = self.text(key) or "false"
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.fail(key, "must be true or false")
        return (self.declared[key].default or "false") == "true"

    def integer(self, key: str, low: int, high: int) -> int:
        return self._ranged(key, int, low, high, f"an integer from {low} to {high}")

    def number(self, key: str, low: float, high: float) -> float:
        return self._ranged(key, float, low, high, f"a number from {low:g} to {high:g}")

    def _ranged(self, key: str, kind: Callable[[str], N], low: N, high: N, what: str) -> N:
        try:
            number: N | None = kind(cast(str, self.text(key)))
        except (TypeError, ValueError):
            number = None
        if number is None or not low <= number <= high:
            self.fail(key, f"must be {what}")
            return kind(cast(str, self.declared[key].default))
        return number

    def string_list(self, key: str) -> tuple[str, ...]:
        """The list; empty when unset (each list key's default is [], "the provider's own")."""
        value = self.text(key)
        if value is None:
            return ()
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
            self.fail(key, "must be a YAML list of strings")
            return ()
        if len(set(parsed)) != len(parsed):
            self.fail(key, "must not repeat an entry")
        return tuple(parsed)

    def choice(self, key: str, allowed: tuple[T, ...]) -> T:
        value = self.text(key)
        for option in allowed:
            if value == option:
                return option
        # The hint names an allowed value, never the one given (it could be a pasted secret).
        near = near_match(value, [str(o) for o in allowed]) if value else None
        hint = f" (did you mean {near}?)" if near else ""
        self.fail(key, "must be one of " + ", ".join(map(str, allowed)) + hint)
        return next(o for o in allowed if o == self.declared[key].default)

    def url(self, key: str, default: str, loopback_http: bool) -> str:
        value = self.text(key) or default
        problem = check_base_url(value, key, loopback_http)
        if problem:
            self.fail(key, problem.removeprefix(f"{key} "))
            return default
        return value.rstrip("/")



# -- keys nobody reads ----------------------------------------------------------------------------


def ignored_keys(config_keys: Iterable[str], read_keys: Collection[str]) -> list[str]:
    """A warning for each config key that would be silently ignored: a key of this namespace
    that no rule asked for, or a key whose namespace is a near miss of this project's name
    (`userflow-segmnet:`). Each says what was probably meant; none carries a value."""
    warnings: list[str] = []
    for key in sorted(config_keys):
        namespace, _, name = key.rpartition(":")
        if namespace == NAMESPACE:
            if name not in read_keys:
                hint = _did_you_mean(name, read_keys, prefix=f"{NAMESPACE}:")
                warnings.append(f"config {key}: not a key of this program{hint}; it is ignored")
        elif namespace and difflib.get_close_matches(namespace, [NAMESPACE], n=1, cutoff=0.8):
            warnings.append(f"config {key}: namespace {namespace} is not this project's "
                            f"(did you mean {NAMESPACE}:{name}?); it is ignored")
    return warnings


def near_match(name: str, candidates: Collection[str]) -> str | None:
    """The candidate `name` probably meant: the same but for case, else a close spelling."""
    folded = {c.lower(): c for c in candidates}
    near = [folded[name.lower()]] if name.lower() in folded else difflib.get_close_matches(
        name, sorted(candidates), n=1, cutoff=0.75)
    return near[0] if near else None


def _did_you_mean(name: str, candidates: Collection[str], prefix: str) -> str:
    near = near_match(name, candidates)
    return f" (did you mean {prefix}{near}?)" if near else " (typo?)"
