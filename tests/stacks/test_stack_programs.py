"""Each stack's program, with its own Pulumi.<stack>.yaml, under Pulumi mocks.

The AWS provider plugin cannot be had offline, so these tests check what the program asks
the engine for (types, names, inputs, protection), not what AWS would do with it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.aws.functions import DELIVERY_HANDLER, INGEST_HANDLER, SYSTEM_LOG_LEVEL
from components.aws.packaging import MAX_ZIP_BYTES
from components.aws.queue import VISIBILITY_TIMEOUT_FACTOR
from components.config import SECRET_KEYS, StackConfig, parse_config
from tests.stacks.conftest import RunStack, succeeded
from tests.stacks.graph import (
    Run,
    config_value,
    environment,
    inputs,
    is_secret,
    one,
    plaintext_strings,
    policy,
    resources,
)
from tests.stacks.harness import ACCOUNT, LEAK_MARKER, PROJECT, ROOT

AWS_STACKS = ("staging", "production")
ALL_STACKS = (*AWS_STACKS, "local")

FUNCTION = "aws:lambda/function:Function"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
QUEUE = "aws:sqs/queue:Queue"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
STAGE = "aws:apigatewayv2/stage:Stage"

# Every AWS type the program may create, by where its physical name lives. A new type fails
# `test_every_physical_name_carries_the_environment` until it is classified here.
NAMED_BY = {
    "aws:secretsmanager/secret:Secret": "name",
    QUEUE: "name",
    LOG_GROUP: "name",
    "aws:iam/role:Role": "name",
    ROLE_POLICY: "name",
    FUNCTION: "name",
    "aws:apigatewayv2/api:Api": "name",
    ALARM: "name",
    "aws:cloudwatch/dashboard:Dashboard": "dashboardName",
    "aws:lambda/permission:Permission": "statementId",
    "aws:dynamodb/table:Table": "name",
    # ledgerCapacity: provisioned only. A scalable target is known by its table.
    "aws:appautoscaling/policy:Policy": "name",
    "aws:appautoscaling/target:Target": "resourceId",
}
# No physical name of their own (ids assigned by AWS), or a fixed one: `$default` is the
# stage whose URL carries no stage path, the same in every environment.
UNNAMED = {
    "aws:secretsmanager/secretVersion:SecretVersion",
    "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy",
    "aws:lambda/eventSourceMapping:EventSourceMapping",
    "aws:apigatewayv2/integration:Integration",
    "aws:apigatewayv2/route:Route",
    STAGE,
}

INGEST_ENV = {"QUEUE_URL", "SEGMENT_SHARED_SECRET_ARN", "USERFLOW_WEBHOOK_SECRET_ARN",
              "SECRETS_TTL_SECONDS", "BRIDGE_LEDGER_TABLE", "BRIDGE_SEGMENT_BATCHING",
              "BRIDGE_METRICS"}
DELIVERY_ENV = {"QUEUE_URL", "DEAD_LETTER_QUEUE_URL", "USERFLOW_API_KEY_ARN",
                "SEGMENT_WRITE_KEY_ARN", "USERFLOW_API_URL", "SEGMENT_TRACKING_URL",
                "SECRETS_TTL_SECONDS", "BRIDGE_LEDGER_TABLE", "BRIDGE_METRICS"}


def effective(run: Run) -> StackConfig:
    """The run's config through the (separately tested) parser: defaults applied."""
    raw = {k.split(":", 1)[1]: v for k, v in run["config"].items()
           if k.startswith(f"{PROJECT}:") and k.split(":", 1)[1] not in SECRET_KEYS}
    secrets = {key: pulumi.Output.secret("unused") for key in SECRET_KEYS}
    return parse_config(raw, run["stack"], secrets, run["config"].get("aws:region"))


def env_vars(run: Run, role: str) -> dict[str, Any]:
    function = one(run, FUNCTION, f"functions-{role}")
    variables: dict[str, Any] = function["inputs"]["environment"]["variables"]
    return variables


@pytest.fixture(params=AWS_STACKS)
def aws_run(request: pytest.FixtureRequest, run_stack: RunStack) -> Run:
    return succeeded(run_stack(request.param))


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_each_stack_builds_from_its_own_stack_file(stack: str, run_stack: RunStack) -> None:
    run = succeeded(run_stack(stack))
    assert environment(run) == stack
    assert run["exports"]["bridgeUrl"]
    for route in ("segmentRouteUrl", "userflowRouteUrl", "healthUrl"):
        assert run["exports"][route].startswith(run["exports"]["bridgeUrl"] + "/")
    for key in ("appSourceId", "userflowSourceId", "destinationId",
                "destinationSubscriptionId", "userflowSubscriptionId"):
        assert run["exports"][key], key


def test_every_physical_name_carries_the_environment(aws_run: Run) -> None:
    env = environment(aws_run)
    for resource in resources(aws_run):
        typ = resource["type"]
        if not resource["custom"] or typ.startswith("pulumi-python:dynamic/"):
            continue
        assert typ in NAMED_BY or typ in UNNAMED, f"unclassified type {typ}"
        if typ in NAMED_BY:
            name = resource["inputs"].get(NAMED_BY[typ])
            assert isinstance(name, str) and env in name, (typ, resource["name"], name)
    assert one(aws_run, STAGE, "api-stage")["inputs"]["name"] == "$default"
    # The Segment source for Userflow's events carries it too, as its slug.
    slugs = {inputs(r)["slug"] for r in resources(aws_run, "pulumi-python:dynamic/segment:Source")}
    assert f"userflow-{env}" in slugs


def test_logical_names_do_not_carry_the_environment(aws_run: Run) -> None:
    # What differs per stack is the physical name; logical names stay the same (next test).
    env = environment(aws_run)
    assert not [r["name"] for r in resources(aws_run) if env in r["name"]]


def test_lambda_environments_hold_secret_arns_never_values(aws_run: Run) -> None:
    ingest, delivery = env_vars(aws_run, "ingest"), env_vars(aws_run, "delivery")
    assert set(ingest) == INGEST_ENV
    assert set(delivery) == DELIVERY_ENV
    exports = aws_run["exports"]
    assert ingest["SEGMENT_SHARED_SECRET_ARN"] == exports["segmentSharedSecretArn"]
    assert ingest["USERFLOW_WEBHOOK_SECRET_ARN"] == exports["userflowWebhookSecretArn"]
    assert delivery["USERFLOW_API_KEY_ARN"] == exports["userflowApiKeySecretArn"]
    assert delivery["SEGMENT_WRITE_KEY_ARN"] == exports["segmentWriteKeySecretArn"]
    for variables in (ingest, delivery):
        for name, value in variables.items():
            assert isinstance(value, str) and not is_secret(value), name
            assert LEAK_MARKER not in value, name
            if name.endswith("_ARN"):
                assert value.startswith(f"arn:aws:secretsmanager:{aws_run['config']['aws:region']}")
    config = effective(aws_run)
    assert delivery["USERFLOW_API_URL"] == config.userflow_api_url
    assert delivery["SEGMENT_TRACKING_URL"] == config.segment_tracking_url
    assert ingest["SECRETS_TTL_SECONDS"] == str(config.secrets_ttl_seconds)
    assert ingest["QUEUE_URL"] == delivery["QUEUE_URL"] == exports["queueUrl"]
    assert delivery["DEAD_LETTER_QUEUE_URL"] == exports["deadLetterQueueUrl"]


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_secret_values_exist_only_as_pulumi_secrets(stack: str, run_stack: RunStack) -> None:
    run = succeeded(run_stack(stack))
    for resource in resources(run):
        leaks = [s for s in plaintext_strings(resource["inputs"]) if LEAK_MARKER in s]
        assert not leaks, (resource["type"], resource["name"])
    assert not [k for k, v in run["exports"].items() if LEAK_MARKER in json.dumps(v)]
    assert run["secret_exports"] == []


def test_each_secret_gets_its_value_from_the_right_source_as_a_secret(aws_run: Run) -> None:
    expected = {
        "secrets-userflow-api-key": f"{LEAK_MARKER}userflow-api-key",
        "secrets-segment-write-key": f"{LEAK_MARKER}write-key",
        "secrets-segment-shared-secret": f"{LEAK_MARKER}shared-secret",
        "secrets-userflow-webhook-secret": f"{LEAK_MARKER}webhook-secret",
    }
    for name, value in expected.items():
        version = one(aws_run, "aws:secretsmanager/secretVersion:SecretVersion", name)
        secret_string = version["inputs"]["secretString"]
        assert is_secret(secret_string) and secret_string["value"] == value
        secret = one(aws_run, "aws:secretsmanager/secret:Secret", name)
        assert secret["inputs"]["recoveryWindowInDays"] == effective(
            aws_run).secret_recovery_window_days
        assert version["inputs"]["secretId"].endswith(f":secret:{secret['inputs']['name']}-AbCdEf")


def _statements(run: Run, role: str) -> dict[str, dict[str, Any]]:
    document = policy(one(run, ROLE_POLICY, f"functions-{role}-policy"))
    return {s["Sid"]: s for s in document["Statement"]}


def test_iam_statements_reference_only_this_stacks_arns(aws_run: Run) -> None:
    env, region = environment(aws_run), aws_run["config"]["aws:region"]
    exports = aws_run["exports"]
    queue_arn = f"arn:aws:sqs:{region}:{ACCOUNT}:{PROJECT}-{env}-work"
    dlq_arn = f"arn:aws:sqs:{region}:{ACCOUNT}:{PROJECT}-{env}-dead-letter"
    ingest, delivery = _statements(aws_run, "ingest"), _statements(aws_run, "delivery")

    def arn_of(export: str) -> str:
        value: str = exports[export]
        return value

    assert ingest["ReadVerificationSecrets"]["Resource"] == [
        arn_of("segmentSharedSecretArn"), arn_of("userflowWebhookSecretArn")]
    assert ingest["ReadVerificationSecrets"]["Action"] == ["secretsmanager:GetSecretValue"]
    assert ingest["Enqueue"] == {"Sid": "Enqueue", "Effect": "Allow",
                                 "Action": ["sqs:SendMessage"], "Resource": [queue_arn]}
    assert delivery["ReadUpstreamCredentials"]["Resource"] == [
        arn_of("userflowApiKeySecretArn"), arn_of("segmentWriteKeySecretArn")]
    assert delivery["ConsumeWorkQueue"]["Resource"] == [queue_arn]
    assert delivery["ParkPermanentFailures"]["Resource"] == [dlq_arn]
    for role, statements in (("ingest", ingest), ("delivery", delivery)):
        log_arn = f"arn:aws:logs:{region}:{ACCOUNT}:log-group:/aws/lambda/{PROJECT}-{env}-{role}"
        assert statements["OwnLogGroup"]["Resource"] == [f"{log_arn}:*"]
        for statement in statements.values():
            assert statement["Effect"] == "Allow"
            for arn in statement["Resource"]:
                # Narrowed everywhere: the only wildcard is "every stream of our log group".
                assert arn != "*" and ("*" not in arn or arn == f"{log_arn}:*")
                assert f"{PROJECT}-{env}" in arn and f":{ACCOUNT}:" in arn
            assert not any("*" in action for action in statement["Action"])


def test_each_function_is_python_arm_with_its_role_logs_and_config(aws_run: Run) -> None:
    config = effective(aws_run)
    env = environment(aws_run)
    for role, handler, timeout, concurrency in (
        ("ingest", INGEST_HANDLER, config.ingest_timeout_seconds,
         config.ingest_reserved_concurrency),
        ("delivery", DELIVERY_HANDLER, config.delivery_timeout_seconds,
         config.delivery_reserved_concurrency),
    ):
        function = one(aws_run, FUNCTION, f"functions-{role}")["inputs"]
        assert function["runtime"] == "python3.13"
        assert function["architectures"] == ["arm64"]
        assert function["handler"] == handler
        assert function["timeout"] == timeout
        assert function["reservedConcurrentExecutions"] == concurrency
        assert function["role"].endswith(f":role/{PROJECT}-{env}-{role}-role")
        log_group = one(aws_run, LOG_GROUP, f"functions-{role}-logs")["inputs"]
        assert function["loggingConfig"]["logFormat"] == "JSON"
        # What bench/cost_model.py counts: Lambda's INFO records (start, report) left out.
        assert (function["loggingConfig"]["systemLogLevel"],
                function["loggingConfig"]["applicationLogLevel"]) == (SYSTEM_LOG_LEVEL, "INFO")
        assert function["loggingConfig"]["logGroup"] == log_group["name"]
        assert log_group["retentionInDays"] == config.log_retention_days
        archive = Path(function["code"]["path"])
        assert not archive.is_absolute() and (ROOT / archive).parent == ROOT / "build"
        trust = json.loads(one(aws_run, "aws:iam/role:Role", f"functions-{role}-role")["inputs"][
            "assumeRolePolicy"])
        assert trust["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}


def test_functions_ship_the_same_deterministic_zip_within_budget(aws_run: Run) -> None:
    paths = {one(aws_run, FUNCTION, f"functions-{r}")["inputs"]["code"]["path"]
             for r in ("ingest", "delivery")}
    assert len(paths) == 1
    data = (ROOT / paths.pop()).read_bytes()
    assert len(data) <= MAX_ZIP_BYTES
    assert hashlib.sha256(data).hexdigest() == aws_run["exports"]["bridgeZipSha256"]


def test_queue_redrive_encryption_and_visibility_follow_config(aws_run: Run) -> None:
    config = effective(aws_run)
    work = one(aws_run, QUEUE, "queue-work")["inputs"]
    dead_letter = one(aws_run, QUEUE, "queue-dead-letter")["inputs"]
    assert work["sqsManagedSseEnabled"] and dead_letter["sqsManagedSseEnabled"]
    assert work["visibilityTimeoutSeconds"] == (
        VISIBILITY_TIMEOUT_FACTOR * config.delivery_timeout_seconds)
    redrive = json.loads(work["redrivePolicy"])
    assert redrive["maxReceiveCount"] == config.max_receive_count
    assert redrive["deadLetterTargetArn"].endswith(f":{dead_letter['name']}")
    allow = json.loads(one(aws_run, "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy",
                           "queue-dead-letter-allow")["inputs"]["redriveAllowPolicy"])
    assert allow["redrivePermission"] == "byQueue"
    assert [arn.rsplit(":", 1)[1] for arn in allow["sourceQueueArns"]] == [work["name"]]
    mapping = one(aws_run, "aws:lambda/eventSourceMapping:EventSourceMapping",
                  "functions-delivery-queue")["inputs"]
    assert mapping["eventSourceArn"].endswith(f":{work['name']}")
    assert mapping["functionName"].endswith(f":function:{PROJECT}-{environment(aws_run)}-delivery")
    assert mapping["batchSize"] == config.delivery_batch_size
    assert mapping["maximumBatchingWindowInSeconds"] == config.delivery_batch_window_seconds
    assert mapping["functionResponseTypes"] == ["ReportBatchItemFailures"]


def test_api_routes_integration_stage_and_permission(aws_run: Run) -> None:
    config = effective(aws_run)
    api = one(aws_run, "aws:apigatewayv2/api:Api", "api-http")["inputs"]
    assert api["protocolType"] == "HTTP"
    api_id = f"api-{api['name']}"  # how the mocks derive ids
    integration = one(aws_run, "aws:apigatewayv2/integration:Integration", "api-ingest")
    assert integration["inputs"]["integrationType"] == "AWS_PROXY"
    assert integration["inputs"]["payloadFormatVersion"] == "2.0"
    assert integration["inputs"]["integrationUri"].endswith(
        f":function:{PROJECT}-{environment(aws_run)}-ingest/invocations")
    routes = {r["inputs"]["routeKey"]: r["inputs"]
              for r in resources(aws_run, "aws:apigatewayv2/route:Route")}
    assert set(routes) == {"POST /segment", "POST /userflow", "GET /health"}
    assert {r["target"] for r in routes.values()} == {"integrations/api-ingest-id"}
    assert {r["apiId"] for r in routes.values()} == {api_id}
    stage = one(aws_run, STAGE, "api-stage")["inputs"]
    assert stage["autoDeploy"] is True
    assert stage["defaultRouteSettings"]["throttlingBurstLimit"] == config.api_throttle_burst_limit
    assert stage["defaultRouteSettings"]["throttlingRateLimit"] == config.api_throttle_rate_limit
    access_logs = one(aws_run, LOG_GROUP, "api-access-logs")["inputs"]
    destination = stage["accessLogSettings"]["destinationArn"]
    assert destination.endswith(f":log-group:{access_logs['name']}")
    assert access_logs["retentionInDays"] == config.log_retention_days
    assert json.loads(stage["accessLogSettings"]["format"])["requestId"] == "$context.requestId"
    permission = one(aws_run, "aws:lambda/permission:Permission", "api-invoke-ingest")["inputs"]
    region = aws_run["config"]["aws:region"]
    assert permission["sourceArn"] == (
        f"arn:aws:execute-api:{region}:{ACCOUNT}:{api_id}/$default/*/*")
    assert permission["principal"] == "apigateway.amazonaws.com"
    assert permission["action"] == "lambda:InvokeFunction"
    assert permission["function"] == f"{PROJECT}-{environment(aws_run)}-ingest"
    bridge_url = f"https://{api_id}.execute-api.{region}.amazonaws.com"
    assert aws_run["exports"]["bridgeUrl"] == bridge_url
    assert aws_run["exports"]["segmentRouteUrl"] == f"{bridge_url}/segment"


def test_segment_and_userflow_are_pointed_at_the_api(aws_run: Run) -> None:
    bridge_url = aws_run["exports"]["bridgeUrl"]
    for typ in ("pulumi-python:dynamic/segment:WebhookDestination",
                "pulumi-python:dynamic/userflow:WebhookSubscription"):
        (resource,) = resources(aws_run, typ)
        assert inputs(resource)["bridge_url"] == bridge_url


def test_alarms_follow_config(aws_run: Run) -> None:
    config = effective(aws_run)
    actions = [config.alarm_topic_arn] if config.alarm_topic_arn else []
    thresholds = {
        "alarms-dead-letter": config.alarm_dead_letter_threshold,
        "alarms-delivery-errors": config.alarm_delivery_errors_threshold,
        "alarms-api-5xx-rate": config.alarm_api_5xx_rate_percent,
    }
    for name, threshold in thresholds.items():
        alarm = one(aws_run, ALARM, name)["inputs"]
        assert alarm["threshold"] == threshold
        assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["evaluationPeriods"] == config.alarm_evaluation_periods
        assert alarm.get("alarmActions", []) == actions
    dead_letter = one(aws_run, ALARM, "alarms-dead-letter")["inputs"]
    assert dead_letter["metricName"] == "ApproximateNumberOfMessagesVisible"
    dead_letter_queue = f"{PROJECT}-{environment(aws_run)}-dead-letter"
    assert dead_letter["dimensions"] == {"QueueName": dead_letter_queue}
    errors = one(aws_run, ALARM, "alarms-delivery-errors")["inputs"]
    assert (errors["namespace"], errors["metricName"]) == ("AWS/Lambda", "Errors")
    assert errors["dimensions"] == {"FunctionName": f"{PROJECT}-{environment(aws_run)}-delivery"}
    rate = one(aws_run, ALARM, "alarms-api-5xx-rate")["inputs"]
    metrics = {q["id"]: q for q in rate["metricQueries"]}
    assert metrics["errors"]["metric"]["metricName"] == "5xx"
    assert metrics["requests"]["metric"]["metricName"] == "Count"
    assert metrics["rate"]["returnData"] is True


def test_values_flow_from_config_not_from_code(run_stack: RunStack) -> None:
    # GIVEN staging with every tunable moved off its stack-file value
    topic = "arn:aws:sns:eu-central-1:123456789012:userflow-segment-staging-alarms"
    run = succeeded(run_stack(
        "staging", logRetentionDays="7", maxReceiveCount="3", apiThrottleBurstLimit="11",
        apiThrottleRateLimit="7.5", deliveryTimeoutSeconds="45", deliveryBatchSize="20",
        deliveryBatchWindowSeconds="4", ingestTimeoutSeconds="8", alarmTopicArn=topic,
        alarmDeadLetterThreshold="3", alarmDeliveryErrorsThreshold="9",
        alarmApi5xxRatePercent="12.5", secretsTtlSeconds="60",
        userflowApiUrl="https://api.eu.userflow.example",
        segmentRegion="eu"))
    # THEN each shows up where it belongs
    assert {one(run, LOG_GROUP, n)["inputs"]["retentionInDays"] for n in (
        "functions-ingest-logs", "functions-delivery-logs", "api-access-logs")} == {7}
    work = one(run, QUEUE, "queue-work")["inputs"]
    assert json.loads(work["redrivePolicy"])["maxReceiveCount"] == 3
    assert work["visibilityTimeoutSeconds"] == 6 * 45
    stage = one(run, STAGE, "api-stage")["inputs"]["defaultRouteSettings"]
    assert (stage["throttlingBurstLimit"], stage["throttlingRateLimit"]) == (11, 7.5)
    mapping = one(run, "aws:lambda/eventSourceMapping:EventSourceMapping",
                  "functions-delivery-queue")["inputs"]
    assert (mapping["batchSize"], mapping["maximumBatchingWindowInSeconds"]) == (20, 4)
    assert one(run, FUNCTION, "functions-ingest")["inputs"]["timeout"] == 8
    assert {n: one(run, ALARM, n)["inputs"]["threshold"] for n in (
        "alarms-dead-letter", "alarms-delivery-errors", "alarms-api-5xx-rate")} == {
        "alarms-dead-letter": 3, "alarms-delivery-errors": 9, "alarms-api-5xx-rate": 12.5}
    assert {tuple(a["inputs"]["alarmActions"]) for a in resources(run, ALARM)} == {(topic,)}
    delivery = env_vars(run, "delivery")
    assert delivery["USERFLOW_API_URL"] == "https://api.eu.userflow.example"
    assert delivery["SEGMENT_TRACKING_URL"] == "https://events.eu1.segmentapis.com"
    assert delivery["SECRETS_TTL_SECONDS"] == "60"


def test_production_resources_are_protected_and_stagings_are_not(run_stack: RunStack) -> None:
    production = succeeded(run_stack("production"))
    staging = succeeded(run_stack("staging"))
    assert config_value(production, "allowDestroy") == "false"
    assert [r["name"] for r in resources(production) if not r["protect"]] == []
    assert [r["name"] for r in resources(staging) if r["protect"]] == []
    # Dynamic Segment/Userflow resources and components are covered, not just AWS ones.
    assert any(r["type"].startswith("pulumi-python:dynamic/") for r in resources(production))


def test_production_can_be_released_for_destroy_by_its_documented_flag(
    run_stack: RunStack,
) -> None:
    released = succeeded(run_stack("production", allowDestroy="true"))
    assert [r["name"] for r in resources(released) if r["protect"]] == []


def test_local_hosting_builds_no_aws_resource_and_uses_bridge_url(run_stack: RunStack) -> None:
    run = succeeded(run_stack("local", bridgeUrl="http://127.0.0.1:9876"))
    assert not [r["type"] for r in resources(run) if r["type"].startswith("aws:")]
    assert run["exports"]["bridgeUrl"] == "http://127.0.0.1:9876"
    assert run["exports"]["segmentRouteUrl"] == "http://127.0.0.1:9876/segment"
    for typ in ("pulumi-python:dynamic/segment:WebhookDestination",
                "pulumi-python:dynamic/userflow:WebhookSubscription"):
        (resource,) = resources(run, typ)
        assert inputs(resource)["bridge_url"] == "http://127.0.0.1:9876"
    assert not any(k.endswith("SecretArn") or k.endswith("QueueUrl") for k in run["exports"])


@pytest.mark.parametrize(
    ("stack", "overrides", "key"),
    [
        ("staging", {"environment": "production"}, "environment"),
        ("production", {"hosting": "azure"}, "hosting"),
        ("staging", {"createAppSource": "true"}, "createAppSource"),
        ("staging", {"aws:region": None}, "aws:region"),
        ("local", {"bridgeUrl": None}, "bridgeUrl"),
        ("staging", {"logRetentionDays": "8"}, "logRetentionDays"),
        ("production", {"userflowApiKey": "ak_pasted_in_plaintext"}, "userflowApiKey"),
    ],
)
def test_the_program_stops_on_bad_config_naming_the_key(
    stack: str, overrides: dict[str, str | None], key: str, run_stack: RunStack
) -> None:
    run = run_stack(stack, **overrides)
    assert run.get("error_type") == "ConfigError", run.get("traceback")
    qualified = key if ":" in key else f"{PROJECT}:{key}"
    assert f"config {qualified}:" in run["error"]
    # The plaintext secret case: the value stays out of the error and its traceback.
    assert "ak_pasted_in_plaintext" not in run["error"] + run["traceback"]


def test_a_mistyped_key_is_warned_about_not_silently_ignored(run_stack: RunStack) -> None:
    run = succeeded(run_stack("staging", logRetentionDay="7"))
    assert any("userflow-segment:logRetentionDay:" in w for w in run["warnings"]), run["warnings"]
    assert not [w for w in succeeded(run_stack("staging"))["warnings"] if "not a key" in w]
