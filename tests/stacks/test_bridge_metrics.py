"""The bridge's EMF lines, from the definition the stack deploys (components/aws/metrics.py)
to the lines bridge_code/metrics.py writes: each must be a valid Embedded Metric Format
document, carry exactly the invocation's counts, and never put request data in a dimension.

EMF rules checked (CloudWatch's specification): `_aws` holds a millisecond `Timestamp` and
`CloudWatchMetrics` directives; every dimension a directive names is a string member of the
root, every metric it names is a number or an array of at most 100 numbers in the root, at
most 30 dimensions per set and 100 metrics per directive.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from bridge_code import delivery, ingest, logs, metrics
from bridge_code.metrics import (
    ZEROS_EVERY_MS,
    EmfWriter,
    MetricsSettingsError,
    MetricsSpec,
    measured,
    settled_latencies_ms,
)
from bridge_code.stats import COUNTERS, DIRECTIONS, BridgeStats
from components.aws.metrics import COUNTER_METRICS, BridgeMetricsDefinition
from components.aws.metrics import DIRECTIONS as DEFINED_DIRECTIONS
from tests.bridge.helpers import FakeUpstream, load_event, make_bridge, segment_request

UNITS = {"Count", "Milliseconds"}
NOW_MS = 1_764_547_200_000
SPEC = MetricsSpec.from_json(BridgeMetricsDefinition("staging").settings_json())


def emf_problems(document: dict[str, Any]) -> list[str]:
    """Why `document` is not valid EMF (empty: it is)."""
    meta = document.get("_aws")
    if not isinstance(meta, dict):
        return ["no _aws object"]
    problems = []
    if not isinstance(meta.get("Timestamp"), int):
        problems.append("Timestamp is not an integer")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        return [*problems, "no CloudWatchMetrics directive"]
    for directive in directives:
        namespace = directive.get("Namespace")
        if not isinstance(namespace, str) or not 1 <= len(namespace) <= 255:
            problems.append(f"bad Namespace {namespace!r}")
        for dimension_set in directive.get("Dimensions", []):
            if len(dimension_set) > 30:
                problems.append("more than 30 dimensions")
            for name in dimension_set:
                if not isinstance(document.get(name), str):
                    problems.append(f"dimension {name} is not a string member of the root")
        definitions = directive.get("Metrics")
        if not isinstance(definitions, list) or not 1 <= len(definitions) <= 100:
            problems.append("Metrics must list 1 to 100 definitions")
            continue
        for definition in definitions:
            name, unit = definition.get("Name"), definition.get("Unit")
            value = document.get(name)
            values = value if isinstance(value, list) else [value]
            if unit not in UNITS:
                problems.append(f"{name}: unit {unit!r}")
            if not 1 <= len(values) <= 100 or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                problems.append(f"{name}: value {value!r} is not a number or 1-100 numbers")
    return problems


def values_by_dimensions(documents: list[dict[str, Any]]) -> dict[tuple[str, ...], dict[str, Any]]:
    """{(direction[, reason]): {metric: value}} over `documents`, directive by directive."""
    found: dict[tuple[str, ...], dict[str, Any]] = {}
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            (dimensions,) = directive["Dimensions"]
            assert document[dimensions[0]] == "staging"
            key = tuple(document[d] for d in dimensions[1:])
            for metric in directive["Metrics"]:
                assert metric["Name"] not in found.get(key, {}), "a metric counted twice"
                found.setdefault(key, {})[metric["Name"]] = document[metric["Name"]]
    return found


def emitted(writer: EmfWriter, stats: BridgeStats, latencies: dict[str, list[int]] | None = None,
            now_ms: int = NOW_MS) -> list[dict[str, Any]]:
    """The documents of what `stats` counted since its last `take_changes`, parsed."""
    counts, skips = stats.take_changes()
    return [json.loads(text) for text in writer.documents(counts, skips, latencies or {}, now_ms)]


def count(stats: BridgeStats, *steps: tuple[str, str, str, int]) -> BridgeStats:
    for kind, direction, name, n in steps:
        if kind == "add":
            stats.add(direction, name, n)  # type: ignore[arg-type]
        else:
            stats.skip(direction, name, n)  # type: ignore[arg-type]
    return stats


def sqs_record(message_id: str, direction: str | None, sent_ms: int | str) -> dict[str, Any]:
    attributes = {} if direction is None else {
        "direction": {"stringValue": direction, "dataType": "String"}}
    return {"messageId": message_id, "body": "{}", "attributes": {"SentTimestamp": str(sent_ms)},
            "messageAttributes": attributes}


@pytest.fixture
def log_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr(logs, "_target", stream)
    # The definition is read once per container: start each test from an unread one.
    monkeypatch.setattr(metrics, "_writer", metrics._UNREAD)
    yield stream


def test_the_definition_names_the_bridges_own_directions_and_counters() -> None:
    assert DEFINED_DIRECTIONS == DIRECTIONS
    # Every metric the dashboard draws is a counter the bridge keeps ("ambiguous" included).
    assert set(COUNTER_METRICS) <= set(COUNTERS)


def test_the_settings_the_stack_writes_parse_back_unchanged() -> None:
    definition = BridgeMetricsDefinition("production")
    spec = MetricsSpec.from_json(definition.settings_json())
    assert (spec.namespace, spec.environment, spec.directions, spec.counters) == (
        definition.namespace, "production", definition.directions, definition.counters)


@pytest.mark.parametrize(("text", "member"), [
    ("not json", "not JSON"),
    ("[]", "JSON object"),
    ('{"environment": "staging"}', "environment"),
    (BridgeMetricsDefinition("s").settings_json().replace('"namespace":"', '"namespace":"" ,"x":"'),
     "namespace"),
    (BridgeMetricsDefinition("s").settings_json().replace('"directions":[', '"directions":[1,'),
     "directions"),
])
def test_a_bad_definition_is_refused_naming_the_member(text: str, member: str) -> None:
    with pytest.raises(MetricsSettingsError, match=member):
        MetricsSpec.from_json(text)


def test_an_invocation_emits_its_own_counts_per_direction_as_valid_emf() -> None:
    # GIVEN a container that already counted earlier invocations
    writer, stats = EmfWriter(SPEC), BridgeStats()
    count(stats, ("add", "segment_to_userflow", "accepted", 7),
          ("skip", "segment_to_userflow", "echo", 2))
    stats.take_changes()
    # WHEN this invocation accepts 3 and skips 2 (one echo, one without a user id)
    count(stats, ("add", "segment_to_userflow", "accepted", 3),
          ("skip", "segment_to_userflow", "echo", 1),
          ("skip", "segment_to_userflow", "no_user_id", 1),
          ("add", "segment_to_userflow", "upstream_calls", 5))  # kept, not a metric
    documents = emitted(writer, stats)
    # THEN every document is EMF, with this invocation's change only; the direction's first
    # document of the minute has every counter, zeros included; the first skip reason rides
    # on it as a second directive, the next has a document of its own
    assert [emf_problems(d) for d in documents] == [[]] * len(documents)
    assert len(documents) == 2
    assert values_by_dimensions(documents) == {
        ("segment_to_userflow",): {"Accepted": 3, "Delivered": 0, "DeadLettered": 0,
                                   "Ambiguous": 0},
        ("segment_to_userflow", "echo"): {"Skipped": 1},
        ("segment_to_userflow", "no_user_id"): {"Skipped": 1},
    }
    assert all(d["_aws"]["Timestamp"] == NOW_MS for d in documents)
    assert {directive["Namespace"] for d in documents
            for directive in d["_aws"]["CloudWatchMetrics"]} == {SPEC.namespace}


def test_zeros_are_written_once_a_minute_per_direction_counts_always() -> None:
    writer, stats = EmfWriter(SPEC), BridgeStats()
    minute = NOW_MS - NOW_MS % ZEROS_EVERY_MS
    accepted = ("add", "userflow_to_segment", "accepted", 1)
    first = emitted(writer, count(stats, accepted), now_ms=minute + 10)
    # Later in the same minute: only the metrics with a count, so a document stays small.
    later = emitted(writer, count(stats, accepted), now_ms=minute + ZEROS_EVERY_MS - 1)
    # The other direction's first document of the minute has its own zeros.
    other = emitted(writer, count(stats, ("add", "segment_to_userflow", "delivered", 2)),
                    now_ms=minute + 20)
    next_minute = emitted(writer, count(stats, accepted), now_ms=minute + ZEROS_EVERY_MS)
    assert [values_by_dimensions(d) for d in (first, later, other, next_minute)] == [
        {("userflow_to_segment",): {"Accepted": 1, "Delivered": 0, "DeadLettered": 0,
                                    "Ambiguous": 0}},
        {("userflow_to_segment",): {"Accepted": 1}},
        {("segment_to_userflow",): {"Accepted": 0, "Delivered": 2, "DeadLettered": 0,
                                    "Ambiguous": 0}},
        {("userflow_to_segment",): {"Accepted": 1, "Delivered": 0, "DeadLettered": 0,
                                    "Ambiguous": 0}},
    ]
    assert len(json.dumps(later[0])) < len(json.dumps(first[0])) - 100
    assert [emf_problems(d) for d in (*first, *later, *other, *next_minute)] == [[]] * 4
    # The one-count shortcut writes what the general way writes for the same metrics.
    at = minute + ZEROS_EVERY_MS + 1
    short = emitted(writer, count(stats, accepted), now_ms=at)
    general = emitted(writer, count(stats, accepted, ("add", "userflow_to_segment",
                                                      "upstream_calls", 1)), now_ms=at)
    assert short == general
    assert values_by_dimensions(short) == {("userflow_to_segment",): {"Accepted": 1}}


def test_the_metrics_sum_to_the_containers_totals_whatever_the_mix() -> None:
    # Many invocations in one minute, each counting something else: what CloudWatch sums
    # from the documents is exactly what the bridge counted (no sampling, zeros add nothing).
    writer, stats = EmfWriter(SPEC), BridgeStats()
    sums: dict[tuple[str, ...], dict[str, int]] = {}
    for i in range(60):
        direction = DIRECTIONS[i % 2]
        count(stats, ("add", direction, ("accepted", "delivered", "dead_lettered")[i % 3], i),
              ("skip", direction, ("echo", "disabled")[i % 2], i % 4))
        for key, values in values_by_dimensions(emitted(writer, stats, now_ms=NOW_MS + i)).items():
            for metric, value in values.items():
                sums.setdefault(key, {})[metric] = sums.get(key, {}).get(metric, 0) + value
    totals = stats.snapshot()
    for direction in DIRECTIONS:
        for counter, metric in COUNTER_METRICS.items():
            assert sums[(direction,)].get(metric, 0) == totals[direction][counter]
        for reason, n in totals[direction]["skipped"].items():
            assert sums[(direction, reason)]["Skipped"] == n


def test_a_batch_in_both_directions_writes_one_document_per_direction_with_latencies() -> None:
    stats = count(BridgeStats(), ("add", "segment_to_userflow", "delivered", 2),
                  ("add", "userflow_to_segment", "dead_lettered", 1))
    latencies = {"segment_to_userflow": [120, 80], "userflow_to_segment": [5000]}
    documents = emitted(EmfWriter(SPEC), stats, latencies)
    assert [emf_problems(d) for d in documents] == [[], []]
    found = values_by_dimensions(documents)
    assert found[("segment_to_userflow",)]["Delivered"] == 2
    assert found[("segment_to_userflow",)]["DeliveryLatency"] == [120, 80]
    assert found[("userflow_to_segment",)]["DeadLettered"] == 1
    assert found[("userflow_to_segment",)]["DeliveryLatency"] == [5000]
    units = {m["Name"]: m["Unit"] for d in documents
             for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units["DeliveryLatency"] == "Milliseconds" and units["Delivered"] == "Count"


def test_more_than_100_latencies_are_split_across_lines() -> None:
    latencies = {"segment_to_userflow": list(range(250))}
    documents = emitted(EmfWriter(SPEC), BridgeStats(), latencies)
    assert [emf_problems(d) for d in documents] == [[]] * 3
    assert [len(d["DeliveryLatency"]) for d in documents] == [100, 100, 50]
    assert [v for d in documents for v in d["DeliveryLatency"]] == list(range(250))


def test_an_idle_invocation_writes_nothing() -> None:
    writer, stats = EmfWriter(SPEC), count(BridgeStats(), ("add", "userflow_to_segment",
                                                           "accepted", 4))
    stats.take_changes()
    # Counters that are no metric (and adding nothing) make no document either.
    count(stats, ("add", "userflow_to_segment", "upstream_calls", 1),
          ("add", "segment_to_userflow", "duplicates", 0))
    assert emitted(writer, stats) == []


def test_a_reason_that_is_not_a_reason_name_is_counted_as_other() -> None:
    # A reason carrying data (here an address) must never become a dimension value.
    stats = count(BridgeStats(), ("skip", "userflow_to_segment", "user@example.com", 2),
                  ("skip", "userflow_to_segment", "Bad Reason", 1))
    documents = emitted(EmfWriter(SPEC), stats)
    assert [emf_problems(d) for d in documents] == [[]]
    assert values_by_dimensions(documents)[("userflow_to_segment", "other")] == {"Skipped": 3}
    assert "example.com" not in json.dumps(documents)


def test_latencies_count_settled_records_of_known_directions_only() -> None:
    event = {"Records": [
        sqs_record("a", "segment_to_userflow", NOW_MS - 1500),
        sqs_record("b", "segment_to_userflow", NOW_MS - 300),  # handed back: not settled
        sqs_record("c", "userflow_to_segment", NOW_MS - 40),
        sqs_record("d", "someone@example.com", NOW_MS - 10),  # not a direction
        sqs_record("e", None, NOW_MS - 10),
        sqs_record("f", "userflow_to_segment", "yesterday"),
    ]}
    answer = {"batchItemFailures": [{"itemIdentifier": "b"}]}
    assert settled_latencies_ms(event, answer, NOW_MS, SPEC.directions) == {
        "segment_to_userflow": [1500], "userflow_to_segment": [40]}
    assert settled_latencies_ms({"rawPath": "/segment"}, {}, NOW_MS, SPEC.directions) == {}


def test_measured_writes_the_metrics_on_the_invocations_own_line(
    log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_METRICS", BridgeMetricsDefinition("staging").settings_json())
    stats = BridgeStats()
    event = {"Records": [sqs_record("m1", "segment_to_userflow", NOW_MS - 250)]}

    def handle(event: Any, context: Any) -> dict[str, Any]:
        stats.add("segment_to_userflow", "delivered")
        stats.skip("segment_to_userflow", "echo")
        stats.skip("segment_to_userflow", "disabled")
        logs.log("ledger unavailable", "WARNING")  # not held: written when it happens
        logs.summary("batch", records=1, delivered=1)
        return {"batchItemFailures": []}

    answer = measured(stats, handle, event, None, clock=lambda: NOW_MS / 1000)
    assert answer == {"batchItemFailures": []}
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["ledger unavailable", "batch", "metrics"]
    warning, batch, more = lines
    assert [emf_problems(line) for line in (batch, more)] == [[], []] and "_aws" not in warning
    assert (batch["records"], batch["delivered"], batch["Delivered"],
            batch["DeliveryLatency"]) == (1, 1, 1, [250])
    assert values_by_dimensions([batch, more]) == {
        ("segment_to_userflow",): {"Accepted": 0, "Delivered": 1, "DeadLettered": 0,
                                   "Ambiguous": 0, "DeliveryLatency": [250]},
        ("segment_to_userflow", "disabled"): {"Skipped": 1},
        ("segment_to_userflow", "echo"): {"Skipped": 1},
    }


def summing_up(event: Any, context: Any) -> dict[str, Any]:
    """A handler that counts nothing and writes its line."""
    logs.summary("request", status=200)
    return {}


def test_a_handler_that_raises_still_writes_its_line_and_no_metrics(
    log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_METRICS", BridgeMetricsDefinition("staging").settings_json())
    stats = BridgeStats()

    def handle(event: Any, context: Any) -> dict[str, Any]:
        stats.add("userflow_to_segment", "accepted")
        logs.summary("request", status=200)
        raise RuntimeError("after its line")

    with pytest.raises(RuntimeError):
        measured(stats, handle, {}, None)
    (line,) = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert line["message"] == "request" and "_aws" not in line
    # And the next invocation's metrics are its own, not the failed one's.
    measured(stats, summing_up, {}, None)
    assert "_aws" not in json.loads(log_lines.getvalue().splitlines()[-1])


def test_without_a_definition_nothing_is_emitted(
    log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRIDGE_METRICS", raising=False)
    stats = BridgeStats()

    def handle(event: Any, context: Any) -> dict[str, Any]:
        stats.add("segment_to_userflow", "accepted")
        return {"statusCode": 200}

    assert measured(stats, handle, {}, None) == {"statusCode": 200}
    assert log_lines.getvalue() == ""
    # The invocation's own line is written as it comes, with nothing joined to it.
    measured(stats, summing_up, {}, None)
    (line,) = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert line["message"] == "request" and "_aws" not in line


def test_a_bad_definition_disables_metrics_once_and_keeps_answering(
    log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_METRICS", "{broken")
    stats = BridgeStats()
    for _ in range(2):
        assert measured(stats, lambda e, c: {"statusCode": 200}, {}, None) == {"statusCode": 200}
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert [(line["message"], line["level"]) for line in lines] == [("metrics disabled", "ERROR")]
    assert "_aws" not in lines[0]


def test_the_lambda_entry_points_emit_through_their_one_call_site(
    log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN both handlers as Lambda runs them, with the definition the stack writes
    with mock_aws(), FakeUpstream() as upstream:
        bridge = make_bridge(upstream.url)
        s = bridge.runtime.settings
        for name, value in {
            "QUEUE_URL": s.queue_url, "DEAD_LETTER_QUEUE_URL": s.dead_letter_queue_url,
            "SEGMENT_SHARED_SECRET_ARN": s.segment_shared_secret_arn,
            "USERFLOW_API_KEY_ARN": s.userflow_api_key_arn, "USERFLOW_API_URL": upstream.url,
            "BRIDGE_LEDGER_TABLE": str(s.ledger_table), "AWS_DEFAULT_REGION": "us-east-1",
            "BRIDGE_METRICS": BridgeMetricsDefinition("staging").settings_json(),
        }.items():
            monkeypatch.setenv(name, str(value))
        monkeypatch.setattr(ingest, "_APP", None)
        monkeypatch.setattr(delivery, "_APP", None)
        # WHEN Segment sends one event and delivery takes it from the queue
        ingest.handler(segment_request(load_event("segment_identify.json")), None)
        (message,) = bridge.sqs.receive_message(
            QueueUrl=s.queue_url, AttributeNames=["All"], MessageAttributeNames=["All"],
        )["Messages"]
        delivery.handler({"Records": [lambda_record(message)]}, None)
    # THEN one line each, the request's and the batch's, carrying their metrics: accepted by
    # ingest, delivered with its latency by delivery
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    with_metrics = [line for line in lines if "_aws" in line]
    assert [emf_problems(line) for line in with_metrics] == [[], []]
    accepted, delivered = with_metrics
    assert (accepted["message"], delivered["message"]) == ("request", "batch")
    assert (accepted["Direction"], accepted["Accepted"]) == ("segment_to_userflow", 1)
    assert (delivered["Direction"], delivered["Delivered"]) == ("segment_to_userflow", 1)
    assert len(delivered["DeliveryLatency"]) == 1 and delivered["DeliveryLatency"][0] >= 0


def lambda_record(message: dict[str, Any]) -> dict[str, Any]:
    """An SQS message as the Lambda event source hands it to the function."""
    return {
        "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"], "attributes": message["Attributes"],
        "messageAttributes": {
            key: {"stringValue": value.get("StringValue"), "dataType": value["DataType"]}
            for key, value in message.get("MessageAttributes", {}).items()},
    }
