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
    MetricsSettingsError,
    MetricsSpec,
    activity,
    emf_documents,
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
    """{(direction[, reason]): {metric: value}} over `documents`."""
    found: dict[tuple[str, ...], dict[str, Any]] = {}
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        (dimensions,) = directive["Dimensions"]
        assert document[dimensions[0]] == "staging"
        key = tuple(document[d] for d in dimensions[1:])
        for metric in directive["Metrics"]:
            found.setdefault(key, {})[metric["Name"]] = document[metric["Name"]]
    return found


def stats_after(*steps: tuple[str, str, str, int]) -> BridgeStats:
    stats = BridgeStats()
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
    monkeypatch.setattr(metrics, "_spec", metrics._UNREAD)
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
    before = stats_after(("add", "segment_to_userflow", "accepted", 7),
                         ("skip", "segment_to_userflow", "echo", 2)).snapshot()
    # WHEN this invocation accepts 3 and skips 2 (one echo, one without a user id)
    after = stats_after(("add", "segment_to_userflow", "accepted", 10),
                        ("skip", "segment_to_userflow", "echo", 3),
                        ("skip", "segment_to_userflow", "no_user_id", 1)).snapshot()
    documents = emf_documents(SPEC, activity(SPEC, before, after, {}), NOW_MS)
    # THEN every line is EMF, with this invocation's change only, zeros included
    assert [emf_problems(d) for d in documents] == [[]] * len(documents)
    assert values_by_dimensions(documents) == {
        ("segment_to_userflow",): {"Accepted": 3, "Delivered": 0, "DeadLettered": 0,
                                   "Ambiguous": 0},
        ("segment_to_userflow", "echo"): {"Skipped": 1},
        ("segment_to_userflow", "no_user_id"): {"Skipped": 1},
    }
    assert all(d["_aws"]["Timestamp"] == NOW_MS for d in documents)
    assert {d["_aws"]["CloudWatchMetrics"][0]["Namespace"] for d in documents} == {SPEC.namespace}


def test_a_batch_in_both_directions_writes_one_line_per_direction_with_latencies() -> None:
    before = BridgeStats().snapshot()
    after = stats_after(("add", "segment_to_userflow", "delivered", 2),
                        ("add", "userflow_to_segment", "dead_lettered", 1)).snapshot()
    latencies = {"segment_to_userflow": [120, 80], "userflow_to_segment": [5000]}
    documents = emf_documents(SPEC, activity(SPEC, before, after, latencies), NOW_MS)
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
    documents = emf_documents(SPEC, activity(SPEC, {}, {}, latencies), NOW_MS)
    assert [emf_problems(d) for d in documents] == [[]] * 3
    assert [len(d["DeliveryLatency"]) for d in documents] == [100, 100, 50]
    assert [v for d in documents for v in d["DeliveryLatency"]] == list(range(250))


def test_an_idle_invocation_writes_nothing() -> None:
    snapshot = stats_after(("add", "userflow_to_segment", "accepted", 4)).snapshot()
    assert emf_documents(SPEC, activity(SPEC, snapshot, snapshot, {}), NOW_MS) == []


def test_a_reason_that_is_not_a_reason_name_is_counted_as_other() -> None:
    # A reason carrying data (here an address) must never become a dimension value.
    after = stats_after(("skip", "userflow_to_segment", "user@example.com", 2),
                        ("skip", "userflow_to_segment", "Bad Reason", 1)).snapshot()
    documents = emf_documents(SPEC, activity(SPEC, {}, after, {}), NOW_MS)
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


def test_measured_writes_the_lines_through_the_bridges_log(
    log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_METRICS", BridgeMetricsDefinition("staging").settings_json())
    stats = BridgeStats()
    event = {"Records": [sqs_record("m1", "segment_to_userflow", NOW_MS - 250)]}

    def handle(event: Any, context: Any) -> dict[str, Any]:
        stats.add("segment_to_userflow", "delivered")
        return {"batchItemFailures": []}

    answer = measured(stats, handle, event, None, clock=lambda: NOW_MS / 1000)
    assert answer == {"batchItemFailures": []}
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert len(lines) == 1 and emf_problems(lines[0]) == []
    assert (lines[0]["message"], lines[0]["Delivered"], lines[0]["DeliveryLatency"]) == (
        "metrics", 1, [250])


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
    # THEN one EMF line each: accepted by ingest, delivered with its latency by delivery
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    emitted = [line for line in lines if "_aws" in line]
    assert [emf_problems(line) for line in emitted] == [[], []]
    accepted, delivered = emitted
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
