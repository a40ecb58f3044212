"""The bridge's counters as CloudWatch metrics: Embedded Metric Format (EMF) log lines.

Lambda sends stdout to CloudWatch Logs, which extracts the metrics of every line that follows
the EMF specification (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
CloudWatch_Embedded_Metric_Format_Specification.html): no CloudWatch API call on the request
path and no permission beyond writing logs.

What to emit comes from the `BRIDGE_METRICS` variable, written by the IaC from its single
definition (components/aws/metrics.py); without it (local runner, unit tests) nothing is
emitted. An invocation's counts are what the container's `BridgeStats` counted during it
(`take_changes`): Lambda runs one invocation at a time per container, so they are exactly
this one's.

EMF gives a dimension one value per document, so an invocation writes one document per
direction it touched (its counters and latencies, and its first skip reason as a second
directive) and one more per further skip reason. Dimension values are never taken from a
request: directions must be one of the definition's, reasons must look like the bridge's
reason names (anything else is counted as "other").

CloudWatch Logs bills every byte, and at one request per webhook these documents are most of
what the bridge logs, so they stay small: a document carries only the metrics with a count
(a zero adds nothing to a Sum), except that the first document of a direction in each minute
of a container carries every counter, zeros included, so that a graph shows 0 rather than a
gap for a quiet counter of an active bridge. The first document rides on the invocation's own
log line (`logs.summary`: the request or batch line), which saves a line's fields and its
per-event charge. The parts that never change in a container (namespace, dimension names,
metric definitions, environment) are serialized once.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from bridge_code import logs
from bridge_code.jsonenc import compact_encoder

if TYPE_CHECKING:
    from bridge_code.stats import BridgeStats, Changes

SETTINGS_VARIABLE = "BRIDGE_METRICS"
# EMF: at most 100 values for one metric in one document.
MAX_VALUES_PER_METRIC = 100
REASON_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
OTHER_REASON = "other"
COUNT = "Count"
MILLISECONDS = "Milliseconds"
# Zeros are written once per this many milliseconds per direction and container: CloudWatch's
# finest standard period is a minute, so every minute with activity has them.
ZEROS_EVERY_MS = 60_000
_text = compact_encoder(ensure_ascii=True)


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


def reason_name(reason: str) -> str:
    """The reason as a dimension value: the bridge's own names pass, anything else is "other"."""
    return reason if REASON_NAME.match(reason) else OTHER_REASON


def settled_latencies_ms(event: object, answer: object, now_ms: int,
                         directions: Iterable[str]) -> dict[str, list[int]]:
    """Enqueue-to-settled time of each SQS record the delivery answer did not hand back
    (delivered, skipped or dead-lettered), by the record's `direction` attribute."""
    # A dict first: the Mapping check (an ABC) costs more, and every invocation asks it.
    if not (type(event) is dict or isinstance(event, Mapping)) \
            or not isinstance(event.get("Records"), list):
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


def _definition(name: str, unit: str) -> str:
    return f'{{"Name":{_text(name)},"Unit":"{unit}"}}'


class EmfWriter:
    """One container's EMF documents, as JSON text, from what its invocations counted."""

    def __init__(self, spec: MetricsSpec) -> None:
        self.spec = spec
        namespace = _text(spec.namespace)
        environment, direction = _text(spec.environment_dimension), _text(spec.direction_dimension)
        reason = _text(spec.reason_dimension)
        self._directive = (f'{{"Namespace":{namespace},"Dimensions":[[{environment},'
                           f'{direction}]],"Metrics":[')
        self._reason_directive = (
            f'{{"Namespace":{namespace},"Dimensions":[[{environment},{direction},{reason}]],'
            f'"Metrics":[{_definition(spec.skipped, COUNT)}]}}')
        self._definitions = {counter: _definition(name, COUNT)
                             for counter, name in spec.counters.items()}
        self._values = {counter: f"{_text(name)}:" for counter, name in spec.counters.items()}
        self._latency = (_definition(spec.latency_ms, MILLISECONDS), f"{_text(spec.latency_ms)}:")
        self._roots = {d: f"{environment}:{_text(spec.environment)},{direction}:{_text(d)}"
                       for d in spec.directions}
        self._reason = f",{reason}:"
        self._skipped = f",{_text(spec.skipped)}:"
        # (counters written, with latencies) -> the directive naming them; a few at most.
        self._directives: dict[tuple[tuple[str, ...], bool], str] = {}
        self._zeros_written: dict[str, int] = {}  # direction -> the ZEROS_EVERY_MS slot
        # The usual invocation counts one thing (a request accepted, a batch delivered) and
        # the minute's zeros are written: its document, but for the time and the number.
        self._single = {
            (d, counter): f"{self._directive_for((counter,), False)}]}},{self._roots[d]},"
                          f"{self._values[counter]}"
            for d in spec.directions for counter in spec.counters}

    def documents(self, counts: Changes, skips: Changes, latencies_ms: Mapping[str, list[int]],
                  timestamp_ms: int) -> list[str]:
        """The EMF documents (JSON objects) for one invocation's counts, skips (both keyed
        by (direction, name), as `BridgeStats.take_changes` gives them) and settled
        latencies; none for an invocation that counted nothing."""
        if len(counts) == 1 and not skips and not latencies_ms:
            ((direction, counter), n), = counts.items()
            single = self._single.get((direction, counter))
            if single is not None and n > 0 and \
                    self._zeros_written.get(direction) == timestamp_ms // ZEROS_EVERY_MS:
                return [f'{{"_aws":{{"Timestamp":{int(timestamp_ms)},"CloudWatchMetrics":['
                        f'{single}{n}}}']
        counted: dict[str, dict[str, int]] = {}
        for (direction, counter), n in counts.items():
            if n > 0 and counter in self._values:  # counters that are no metric stay out
                counted.setdefault(direction, {})[counter] = n
        reasons: dict[str, dict[str, int]] = {}
        for (direction, reason), n in skips.items():
            if n > 0:
                named = reasons.setdefault(direction, {})
                name = reason_name(reason)
                named[name] = named.get(name, 0) + n
        if not (counted or reasons or latencies_ms):
            return []
        documents: list[str] = []
        head = f'{{"_aws":{{"Timestamp":{int(timestamp_ms)},"CloudWatchMetrics":['
        slot = timestamp_ms // ZEROS_EVERY_MS
        for direction in self.spec.directions:
            found = counted.get(direction, {})
            named = reasons.get(direction, {})
            latencies = latencies_ms.get(direction) or []
            if not (found or named or latencies):
                continue
            if self._zeros_written.get(direction) == slot:
                written = tuple(counter for counter in self._values if counter in found)
            else:
                self._zeros_written[direction] = slot
                written = tuple(self._values)
            chunks = [latencies[i:i + MAX_VALUES_PER_METRIC]
                      for i in range(0, len(latencies), MAX_VALUES_PER_METRIC)]
            values = [f"{self._values[counter]}{found.get(counter, 0)}" for counter in written]
            if chunks:
                values.append(self._latency_value(chunks[0]))
            directives = [self._directive_for(written, bool(chunks))] if values else []
            ordered = sorted(named)
            if ordered:
                # The first reason rides along as a further directive (a second dimension
                # set over the same root): no document of its own for the common single skip.
                first = ordered.pop(0)
                directives.append(self._reason_directive)
                values.append(f"{self._reason[1:]}{_text(first)}{self._skipped}{named[first]}")
            root = self._roots[direction]
            # Never empty: an active direction has a count, a latency or a skip reason.
            documents.append(f"{head}{','.join(directives)}]}},{root},{','.join(values)}}}")
            for chunk in chunks[1:]:
                documents.append(f"{head}{self._directive_for((), True)}]}},{root},"
                                 f"{self._latency_value(chunk)}}}")
            for reason in ordered:
                documents.append(f"{head}{self._reason_directive}]}},{root}{self._reason}"
                                 f"{_text(reason)}{self._skipped}{named[reason]}}}")
        return documents

    def _directive_for(self, counters: tuple[str, ...], latencies: bool) -> str:
        directive = self._directives.get((counters, latencies))
        if directive is None:
            definitions = [self._definitions[counter] for counter in counters]
            if latencies:
                definitions.append(self._latency[0])
            directive = f"{self._directive}{','.join(definitions)}]}}"
            self._directives[counters, latencies] = directive
        return directive

    def _latency_value(self, chunk: list[int]) -> str:
        return f"{self._latency[1]}[{','.join(str(int(v)) for v in chunk)}]"


_UNREAD = object()
_writer: object = _UNREAD


def configured_writer(env: Mapping[str, str] | None = None) -> EmfWriter | None:
    """The container's writer, from its definition read once; a bad one is logged and
    disables metrics (the events keep flowing: metrics are never worth a failed request)."""
    global _writer
    if _writer is _UNREAD:
        text = (os.environ if env is None else env).get(SETTINGS_VARIABLE, "").strip()
        try:
            _writer = EmfWriter(MetricsSpec.from_json(text)) if text else None
        except MetricsSettingsError as error:
            logs.log("metrics disabled", "ERROR", error=str(error))
            _writer = None
    return _writer if isinstance(_writer, EmfWriter) else None


def measured(stats: BridgeStats, handle: Callable[[Any, Any], dict[str, Any]],
             event: Any, context: Any, clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """`handle(event, context)`, then its log line carrying this invocation's metrics."""
    writer = configured_writer()
    if writer is None:
        return handle(event, context)
    stats.take_changes()  # counted outside any invocation (none in Lambda): not this one's
    logs.hold_summaries()
    try:
        answer = handle(event, context)
    except BaseException:
        logs.release_summaries([])
        raise
    try:
        now_ms = round(clock() * 1000)
        counts, skips = stats.take_changes()
        documents = writer.documents(
            counts, skips, settled_latencies_ms(event, answer, now_ms, writer.spec.directions),
            now_ms)
    except Exception as error:
        documents = []
        logs.log("metrics failed", "WARNING", error=type(error).__name__)
    logs.release_summaries(documents)
    return answer
