"""The bridge's counters as CloudWatch metrics: Embedded Metric Format (EMF) log lines.

Lambda sends stdout to CloudWatch Logs, which extracts the metrics of every line that follows
the EMF specification (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
CloudWatch_Embedded_Metric_Format_Specification.html): no CloudWatch API call on the request
path and no permission beyond writing logs.

What to emit comes from the `BRIDGE_METRICS` variable, written by the IaC from its single
definition (components/aws/metrics.py); without it (local runner, unit tests) nothing is
emitted. An invocation's counts are the change of the container's `BridgeStats` across it:
Lambda runs one invocation at a time per container, so the change is exactly this one's.

EMF gives a dimension one value per log line, so an invocation writes one line per direction
it touched and one per (direction, skip reason). Dimension values are never taken from a
request: directions must be one of the definition's, reasons must look like the bridge's
reason names (anything else is counted as "other").
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

from bridge_code.logs import log

if TYPE_CHECKING:
    from bridge_code.stats import BridgeStats

SETTINGS_VARIABLE = "BRIDGE_METRICS"
# EMF: at most 100 values for one metric in one document.
MAX_VALUES_PER_METRIC = 100
REASON_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
OTHER_REASON = "other"
COUNT = "Count"
MILLISECONDS = "Milliseconds"

Snapshot = Mapping[str, Mapping[str, Any]]
"""`BridgeStats.snapshot()`: direction -> {counter: n, ..., "skipped": {reason: n}}."""
Document = dict[str, Any]


class MetricsSettingsError(ValueError):
    """`BRIDGE_METRICS` is not a definition the bridge can emit."""


@dataclass(frozen=True)
class MetricsSpec:
    """Namespace, dimension names and metric names, as components/aws/metrics.py wrote them."""

    namespace: str
    environment_dimension: str
    environment: str
    direction_dimension: str
    reason_dimension: str
    directions: tuple[str, ...]
    counters: dict[str, str]
    """Bridge counter -> metric name."""
    skipped: str
    latency_ms: str

    @classmethod
    def from_json(cls, text: str) -> MetricsSpec:
        """Parse and check the definition; the error says which member is wrong."""
        try:
            document = json.loads(text)
        except ValueError:
            raise MetricsSettingsError(f"{SETTINGS_VARIABLE} is not JSON") from None
        if not isinstance(document, dict):
            raise MetricsSettingsError(f"{SETTINGS_VARIABLE} must be a JSON object")
        environment = document.get("environment")
        if not isinstance(environment, dict):
            raise MetricsSettingsError(f"{SETTINGS_VARIABLE}: environment must be an object")
        counters = document.get("counters")
        if not isinstance(counters, dict) or not all(
                isinstance(k, str) and _is_name(v) for k, v in counters.items()):
            raise MetricsSettingsError(f"{SETTINGS_VARIABLE}: counters must map names to names")
        directions = document.get("directions")
        if not isinstance(directions, list) or not all(_is_name(d) for d in directions):
            raise MetricsSettingsError(f"{SETTINGS_VARIABLE}: directions must be names")
        return cls(
            namespace=_name(document, "namespace"),
            environment_dimension=_name(environment, "dimension", "environment."),
            environment=_name(environment, "value", "environment."),
            direction_dimension=_name(document, "direction_dimension"),
            reason_dimension=_name(document, "reason_dimension"),
            directions=tuple(directions),
            counters=dict(counters),
            skipped=_name(document, "skipped"),
            latency_ms=_name(document, "latency_ms"),
        )


def _name(document: Mapping[str, Any], key: str, where: str = "") -> str:
    value = document.get(key)
    if not _is_name(value):
        raise MetricsSettingsError(f"{SETTINGS_VARIABLE}: {where}{key} must be a non-empty string")
    return value


def _is_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= 255


@dataclass
class Activity:
    """What one invocation did in one direction."""

    counters: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(self.counters.values()) or any(self.skipped.values()) or bool(
            self.latencies_ms)


def reason_name(reason: str) -> str:
    """The reason as a dimension value: the bridge's own names pass, anything else is "other"."""
    return reason if REASON_NAME.match(reason) else OTHER_REASON


def activity(spec: MetricsSpec, before: Snapshot, after: Snapshot,
             latencies_ms: Mapping[str, list[int]]) -> dict[str, Activity]:
    """Per direction of the definition that changed: counter and skip changes from `before`
    to `after` (a counter the bridge does not keep yet counts 0), and the settled events'
    latencies."""
    found: dict[str, Activity] = {}
    for direction in spec.directions:
        old, new = before.get(direction, {}), after.get(direction, {})
        if old == new and not latencies_ms.get(direction):
            continue  # the usual case for one of the two directions: nothing to compute
        counters = {counter: max(0, _count(new, counter) - _count(old, counter))
                    for counter in spec.counters}
        skipped: dict[str, int] = {}
        old_skips, new_skips = _skips(old), _skips(new)
        for reason, n in new_skips.items():
            change = n - old_skips.get(reason, 0)
            if change > 0:
                name = reason_name(reason)
                skipped[name] = skipped.get(name, 0) + change
        found[direction] = Activity(counters, skipped, list(latencies_ms.get(direction, [])))
    return found


def _count(counts: Mapping[str, Any], counter: str) -> int:
    value = counts.get(counter, 0)
    return value if isinstance(value, int) else 0


def _skips(counts: Mapping[str, Any]) -> dict[str, int]:
    skipped = counts.get("skipped", {})
    if not isinstance(skipped, Mapping):
        return {}
    return {str(k): v for k, v in skipped.items() if isinstance(v, int)}


def settled_latencies_ms(event: object, answer: object, now_ms: int,
                         directions: Iterable[str]) -> dict[str, list[int]]:
    """Enqueue-to-settled time of each SQS record the delivery answer did not hand back
    (delivered, skipped or dead-lettered), by the record's `direction` attribute."""
    if not isinstance(event, Mapping) or not isinstance(event.get("Records"), list):
        return {}
    known = set(directions)
    failures = answer.get("batchItemFailures") if isinstance(answer, Mapping) else None
    retried = {str(f.get("itemIdentifier")) for f in failures or [] if isinstance(f, Mapping)}
    found: dict[str, list[int]] = {}
    for record in event["Records"]:
        if not isinstance(record, Mapping) or str(record.get("messageId")) in retried:
            continue
        direction = _string_attribute(record, "direction")
        sent = _sent_timestamp_ms(record)
        if direction in known and sent is not None:
            found.setdefault(direction, []).append(max(0, now_ms - sent))
    return found


def _string_attribute(record: Mapping[str, Any], name: str) -> str | None:
    attributes = record.get("messageAttributes")
    attribute = attributes.get(name) if isinstance(attributes, Mapping) else None
    value = attribute.get("stringValue") if isinstance(attribute, Mapping) else None
    return value if isinstance(value, str) else None


def _sent_timestamp_ms(record: Mapping[str, Any]) -> int | None:
    attributes = record.get("attributes")
    sent = attributes.get("SentTimestamp") if isinstance(attributes, Mapping) else None
    try:
        return int(sent) if sent is not None else None
    except (TypeError, ValueError):
        return None


def emf_documents(spec: MetricsSpec, activities: Mapping[str, Activity],
                  timestamp_ms: int) -> list[Document]:
    """The EMF log lines for one invocation: per direction with any activity, its counters
    (zeros included, so a graph shows 0 rather than a gap) and latencies; per skip reason,
    its count."""
    documents: list[Document] = []
    for direction in spec.directions:
        done = activities.get(direction)
        if not done:
            continue
        base = {spec.environment_dimension: spec.environment,
                spec.direction_dimension: direction}
        chunks = [done.latencies_ms[i:i + MAX_VALUES_PER_METRIC]
                  for i in range(0, len(done.latencies_ms), MAX_VALUES_PER_METRIC)]
        values: dict[str, tuple[str, int | list[int]]] = {
            spec.counters[c]: (COUNT, n) for c, n in done.counters.items()}
        if chunks:
            values[spec.latency_ms] = (MILLISECONDS, chunks[0])
        documents.append(_document(spec, base, values, timestamp_ms))
        for chunk in chunks[1:]:
            documents.append(
                _document(spec, base, {spec.latency_ms: (MILLISECONDS, chunk)}, timestamp_ms))
        for reason in sorted(done.skipped):
            documents.append(_document(
                spec, {**base, spec.reason_dimension: reason},
                {spec.skipped: (COUNT, done.skipped[reason])}, timestamp_ms))
    return documents


def _document(spec: MetricsSpec, dimensions: dict[str, str],
              values: Mapping[str, tuple[str, int | list[int]]], timestamp_ms: int) -> Document:
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": spec.namespace,
                "Dimensions": [list(dimensions)],
                "Metrics": [{"Name": name, "Unit": unit} for name, (unit, _) in values.items()],
            }],
        },
        **dimensions,
        **{name: value for name, (_, value) in values.items()},
    }


_UNREAD = object()
_spec: object = _UNREAD


def configured_spec(env: Mapping[str, str] | None = None) -> MetricsSpec | None:
    """The container's definition, read once; a bad one is logged and disables metrics (the
    events keep flowing: metrics are never worth a failed request)."""
    global _spec
    if _spec is _UNREAD:
        text = (os.environ if env is None else env).get(SETTINGS_VARIABLE, "").strip()
        try:
            _spec = MetricsSpec.from_json(text) if text else None
        except MetricsSettingsError as error:
            log("metrics disabled", "ERROR", error=str(error))
            _spec = None
    return _spec if isinstance(_spec, MetricsSpec) else None


def measured(stats: BridgeStats, handle: Callable[[Any, Any], dict[str, Any]],
             event: Any, context: Any, clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """`handle(event, context)`, then this invocation's metrics as EMF lines."""
    spec = configured_spec()
    if spec is None:
        return handle(event, context)
    before = stats.snapshot()
    answer = handle(event, context)
    try:
        now_ms = round(clock() * 1000)
        latencies = settled_latencies_ms(event, answer, now_ms, spec.directions)
        for document in emf_documents(spec, activity(spec, before, stats.snapshot(), latencies),
                                      now_ms):
            log("metrics", **document)
    except Exception as error:
        log("metrics failed", "WARNING", error=type(error).__name__)
    return answer
