"""The config rules, pure: raw strings in, StackConfig or one error naming every bad key out."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest
import yaml

from components.config import (
    LOG_RETENTION_DAYS,
    SECRET_KEYS,
    ConfigError,
    StackConfig,
    parse_config,
    parse_stack,
)
from components.config_keys import declarations, ignored_keys

ROOT = Path(__file__).resolve().parents[2]
AWS_BASE = {"environment": "staging", "hosting": "aws", "segmentAppSourceSlug": "app-staging"}
LOCAL_BASE = {"environment": "local", "hosting": "local", "bridgeUrl": "http://127.0.0.1:8080",
              "createAppSource": "true"}


def secrets() -> dict[str, pulumi.Output[str]]:
    return {key: pulumi.Output.secret(f"value-of-{key}") for key in SECRET_KEYS}


def parse(raw: dict[str, str], stack: str = "staging", region: str | None = "eu-central-1",
          **kwargs: object) -> StackConfig:
    return parse_config(raw, stack, kwargs.pop("secret_values", secrets()),  # type: ignore[arg-type]
                        region, project_root=ROOT)


def error_for(raw: dict[str, str], stack: str = "staging", **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(raw, stack, **kwargs)  # type: ignore[arg-type]
    return caught.value


def line_for(error: ConfigError, key: str) -> str:
    """The one line of the error that names `key`."""
    qualified = key if ":" in key else f"userflow-segment:{key}"
    (line,) = [line for line in str(error).splitlines() if f"config {qualified}:" in line]
    return line


def test_defaults_apply_when_only_the_required_keys_are_set() -> None:
    # GIVEN the minimum an aws stack needs WHEN parsed THEN the documented defaults hold.
    config = parse(dict(AWS_BASE))
    assert config.hosting == "aws"
    assert config.segment_api_url == "https://api.segmentapis.com"
    assert config.segment_tracking_url == "https://api.segment.io"
    assert config.userflow_api_url == "https://api.userflow.com"
    assert config.segment_event_types == ("identify", "track", "group")
    assert config.bridge_mapping == ROOT / "bridge_code" / "mapping.yaml"
    assert (config.max_receive_count, config.log_retention_days) == (10, 30)
    assert config.secrets_ttl_seconds == 300
    assert config.name_prefix == "userflow-segment-staging"
    assert config.segment_region == "us"
    assert config.userflow_topics is None  # the Userflow provider's own default topics


@pytest.mark.parametrize("stack", ["staging", "production", "prod-eu"])
def test_every_stack_is_protected_unless_its_file_says_allow_destroy(stack: str) -> None:
    # GIVEN any stack, whatever its name (a third environment like prod-eu included)
    base = {**AWS_BASE, "environment": stack}
    # WHEN its file says nothing, or false THEN it is protected; only true releases it
    assert parse(base, stack).protect
    assert parse({**base, "allowDestroy": "false"}, stack).protect
    assert not parse({**base, "allowDestroy": "true"}, stack).protect


@pytest.mark.parametrize(
    ("raw", "key", "allowed"),
    [
        ({**AWS_BASE, "environment": "production"}, "environment", "stack name (staging)"),
        ({k: v for k, v in AWS_BASE.items() if k != "environment"}, "environment", "required"),
        ({**AWS_BASE, "hosting": "gcp"}, "hosting", "aws, local"),
        ({**AWS_BASE, "bridgeUrl": "https://x.example"}, "bridgeUrl", "only when hosting=local"),
        ({**AWS_BASE, "createAppSource": "true"}, "createAppSource", "only when hosting=local"),
        ({**AWS_BASE, "segmentAppSourceId": "abc"}, "segmentAppSourceId", "exactly one"),
        ({"environment": "staging"}, "segmentAppSourceId", "exactly one"),
        ({**AWS_BASE, "segmentApiUrl": "http://api.example"}, "segmentApiUrl", "https://"),
        ({**AWS_BASE, "userflowApiUrl": "http://127.0.0.1:9"}, "userflowApiUrl", "https://"),
        ({**AWS_BASE, "segmentEventTypes": '["track","purchase"]'}, "segmentEventTypes",
         "identify, track"),
        ({**AWS_BASE, "segmentEventTypes": '["track","track"]'}, "segmentEventTypes",
         "not repeat"),
        ({**AWS_BASE, "segmentEventTypes": "track"}, "segmentEventTypes", "list of strings"),
        ({**AWS_BASE, "userflowTopics": '["users"]'}, "userflowTopics", "Userflow topics"),
        ({**AWS_BASE, "segmentBatching": "yes"}, "segmentBatching", "true or false"),
        ({**AWS_BASE, "segmentBatchSize": "0"}, "segmentBatchSize", "from 1 to 1000"),
        ({**AWS_BASE, "ingestTimeoutSeconds": "30"}, "ingestTimeoutSeconds", "from 1 to 29"),
        ({**AWS_BASE, "deliveryTimeoutSeconds": "ten"}, "deliveryTimeoutSeconds", "integer"),
        ({**AWS_BASE, "deliveryReservedConcurrency": "0"}, "deliveryReservedConcurrency",
         "-1 (unreserved)"),
        ({**AWS_BASE, "deliveryBatchSize": "50", "deliveryBatchWindowSeconds": "0"},
         "deliveryBatchWindowSeconds", ">= 1 when deliveryBatchSize > 10"),
        ({**AWS_BASE, "logRetentionDays": "10"}, "logRetentionDays", "one of 1, 3, 5"),
        ({**AWS_BASE, "secretRecoveryWindowDays": "3"}, "secretRecoveryWindowDays", "7 to 30"),
        ({**AWS_BASE, "alarmTopicArn": "my-topic"}, "alarmTopicArn",
         "arn:aws:sns:<region>:<12-digit account id>:<topic name>"),
        ({**AWS_BASE, "segmentRegion": "apac"}, "segmentRegion", "us, eu"),
        ({**AWS_BASE, "segmentApiUrl": "https://x.example/?token=1"}, "segmentApiUrl",
         "query string"),
        ({**AWS_BASE, "alarmPeriodSeconds": "45"}, "alarmPeriodSeconds", "multiple of 60"),
        ({**AWS_BASE, "apiThrottleRateLimit": "0"}, "apiThrottleRateLimit", "from 1 to"),
        ({**AWS_BASE, "bridgeMapping": "bridge_code/missing.yaml"}, "bridgeMapping", ".yaml"),
        ({**AWS_BASE, "allowDestroy": "maybe"}, "allowDestroy", "true or false"),
        ({**AWS_BASE, "userflowIngress": "lambda"}, "userflowIngress",
         "one of apiGateway, functionUrl"),
        ({**AWS_BASE, "userflowIngress": "functionUrl", "ingestReservedConcurrency": "-1"},
         "ingestReservedConcurrency", "function URL's only bound"),
        ({**AWS_BASE, "ledgerCapacity": "auto"}, "ledgerCapacity", "onDemand, provisioned"),
        ({**AWS_BASE, "ledgerMinWriteCapacity": "0"}, "ledgerMinWriteCapacity",
         "from 1 to 40000"),
        ({**AWS_BASE, "ledgerMaxReadCapacity": "40001"}, "ledgerMaxReadCapacity",
         "from 1 to 40000"),
        ({**AWS_BASE, "ledgerMinWriteCapacity": "1001"}, "ledgerMinWriteCapacity",
         "at most ledgerMaxWriteCapacity"),
        ({**AWS_BASE, "ledgerMinReadCapacity": "9", "ledgerMaxReadCapacity": "8"},
         "ledgerMinReadCapacity", "at most ledgerMaxReadCapacity"),
        ({**AWS_BASE, "ledgerTargetUtilization": "95"}, "ledgerTargetUtilization",
         "from 20 to 90"),
        ({**AWS_BASE, "ledgerTargetUtilization": "0.7"}, "ledgerTargetUtilization", "integer"),
        ({**AWS_BASE, "alarmLedgerThrottledThreshold": "0"}, "alarmLedgerThrottledThreshold",
         "from 1 to 100000"),
    ],
)
def test_each_invalid_value_is_named_with_what_is_allowed(
    raw: dict[str, str], key: str, allowed: str
) -> None:
    error = error_for(raw)
    assert key in error.keys
    assert allowed in line_for(error, key)


def test_userflow_ingress_defaults_to_the_api_and_takes_the_function_url_on_aws() -> None:
    assert parse(dict(AWS_BASE)).userflow_ingress == "apiGateway"
    assert parse(dict(LOCAL_BASE), "local", region=None).userflow_ingress == "apiGateway"
    chosen = parse({**AWS_BASE, "userflowIngress": "functionUrl"})
    assert (chosen.userflow_ingress, chosen.hosting) == ("functionUrl", "aws")
    # The local bridge serves every route at bridgeUrl: there is no function URL to use.
    error = error_for({**LOCAL_BASE, "userflowIngress": "functionUrl"}, "local", region=None)
    assert error.keys == ("userflowIngress",)
    assert "may be functionUrl only when hosting=aws" in line_for(error, "userflowIngress")


@pytest.mark.parametrize(("given", "meant"), [
    ("functionurl", "functionUrl"), ("FunctionUrl", "functionUrl"), ("functionUrls", "functionUrl"),
    ("apigateway", "apiGateway"), ("apiGatway", "apiGateway"),
])
def test_a_near_miss_of_an_enum_value_is_named_without_echoing_it(given: str, meant: str) -> None:
    line = line_for(error_for({**AWS_BASE, "userflowIngress": given}), "userflowIngress")
    assert line.endswith(f"must be one of apiGateway, functionUrl (did you mean {meant}?)")
    assert given not in line.replace(f"did you mean {meant}", "").replace(meant, "")


def test_a_value_near_nothing_gets_no_guess() -> None:
    line = line_for(error_for({**AWS_BASE, "userflowIngress": "cloudfront"}), "userflowIngress")
    assert "did you mean" not in line
    hosting = line_for(error_for({**AWS_BASE, "hosting": "AWS"}), "hosting")
    assert hosting.endswith("(did you mean aws?)")


def test_the_ledger_is_on_demand_unless_provisioned_is_asked_for() -> None:
    default = parse(dict(AWS_BASE)).ledger_capacity
    assert default.mode == "onDemand" and not default.provisioned
    # The scaler's bounds are read either way, so going back to on demand is one key.
    assert (default.min_write, default.max_write, default.min_read, default.max_read,
            default.target_utilization) == (5, 1000, 1, 50, 70)
    provisioned = parse({**AWS_BASE, "ledgerCapacity": "provisioned",
                         "ledgerMinWriteCapacity": "10", "ledgerMaxWriteCapacity": "10",
                         "ledgerTargetUtilization": "20"}).ledger_capacity
    assert provisioned.provisioned
    assert (provisioned.min_write, provisioned.max_write) == (10, 10)  # min = max is allowed
    assert provisioned.target_utilization == 20
    assert parse({**AWS_BASE, "ledgerCapacity": "provisioned",
                  "ledgerTargetUtilization": "90"}).ledger_capacity.target_utilization == 90


def test_a_bad_ledger_maximum_is_named_once_not_also_as_the_minimums_problem() -> None:
    # The invalid maximum's default (1000) stands in; 1001 above it is not a second problem.
    error = error_for({**AWS_BASE, "ledgerMinWriteCapacity": "1001",
                       "ledgerMaxWriteCapacity": "0"})
    assert error.keys == ("ledgerMaxWriteCapacity",)


def test_aws_hosting_needs_a_region() -> None:
    error = error_for(dict(AWS_BASE), region=None)
    assert error.keys == ("aws:region",)
    assert "config aws:region: is required" in str(error)


def test_the_region_must_be_an_aws_region_and_a_near_miss_is_named() -> None:
    error = error_for(dict(AWS_BASE), region="eu-centrl-1")
    assert "did you mean eu-central-1?" in line_for(error, "aws:region")
    assert "eu-centrl-1" not in str(error).replace("did you mean eu-central-1", "")
    assert parse(dict(AWS_BASE), region="us-gov-west-1").region == "us-gov-west-1"
    assert parse(dict(LOCAL_BASE), "local", region="not-a-region").hosting == "local"


@pytest.mark.parametrize("missing", SECRET_KEYS)
def test_each_secret_is_required_and_the_error_says_how_to_set_it(missing: str) -> None:
    present = {k: v for k, v in secrets().items() if k != missing}
    error = error_for(dict(AWS_BASE), secret_values=present)
    assert error.keys == (missing,)
    assert f"pulumi config set --secret {missing}" in str(error)


def test_errors_never_echo_the_offending_value() -> None:
    # A mistyped value may be a pasted secret: the message names the key, not the value.
    leaked = "ak_live_0123456789"
    error = error_for({**AWS_BASE, "segmentBatchSize": leaked})
    assert leaked not in str(error)


def test_local_hosting_takes_the_bridge_url_from_config() -> None:
    config = parse(dict(LOCAL_BASE), "local", region=None)
    assert config.hosting == "local"
    assert config.bridge_url == "http://127.0.0.1:8080"
    assert config.create_app_source


def test_local_hosting_requires_bridge_url() -> None:
    raw = {k: v for k, v in LOCAL_BASE.items() if k != "bridgeUrl"}
    assert error_for(raw, "local", region=None).keys == ("bridgeUrl",)


def test_create_app_source_excludes_an_explicit_app_source() -> None:
    error = error_for({**LOCAL_BASE, "segmentAppSourceSlug": "app"}, "local", region=None)
    assert error.keys == ("segmentAppSourceSlug",)


def test_lists_and_numbers_parse_from_engine_strings() -> None:
    config = parse({**AWS_BASE, "segmentEventTypes": '["track"]', "apiThrottleRateLimit": "2.5",
                    "userflowTopics": '["event.tracked.flow_started", "user"]',
                    "ingestReservedConcurrency": "-1"})
    assert config.segment_event_types == ("track",)
    assert config.api_throttle_rate_limit == 2.5
    assert config.userflow_topics == ("event.tracked.flow_started", "user")
    assert config.ingest_reserved_concurrency == -1


def test_every_retention_period_cloudwatch_accepts_is_accepted() -> None:
    for days in LOG_RETENTION_DAYS:
        assert parse({**AWS_BASE, "logRetentionDays": str(days)}).log_retention_days == days


def test_the_secret_keys_are_the_ones_pulumi_yaml_declares_secret() -> None:
    declared = declarations(ROOT)
    assert {k for k, d in declared.items() if d.secret} == set(SECRET_KEYS)
    # Required: no default, so the engine names them when missing, before the program runs.
    assert {k for k, d in declared.items() if d.default is None} == {"environment", *SECRET_KEYS}


def test_unknown_keys_of_the_namespace_are_reported_and_others_left_alone() -> None:
    keys = ["userflow-segment:logRetentionDays", "userflow-segment:logRetentionDay",
            "aws:region", "userflow-segment:Hosting", "pulumi:tags"]
    read = parse_stack(dict(AWS_BASE), "staging", secrets(), "eu-central-1", ROOT).read_keys
    warnings = ignored_keys(keys, read)
    assert warnings == [
        "config userflow-segment:Hosting: not a key of this program "
        "(did you mean userflow-segment:hosting?); it is ignored",
        "config userflow-segment:logRetentionDay: not a key of this program "
        "(did you mean userflow-segment:logRetentionDays?); it is ignored",
    ]


def test_a_typo_in_the_namespace_is_reported() -> None:
    (warning,) = ignored_keys(["userflow-segmnet:hosting", "aws:region", "pulumi:tags"], set())
    assert "namespace userflow-segmnet is not this project's" in warning
    assert "did you mean userflow-segment:hosting?" in warning


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_a_secret_set_in_plaintext_is_refused(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(dict(AWS_BASE), "staging", secrets(), "eu-central-1", project_root=ROOT,
                     plaintext_keys=frozenset({key}))
    assert caught.value.key == key
    assert "must be encrypted" in str(caught.value)


# -- every problem at once, as one message ----------------------------------------------------


def test_every_problem_is_listed_at_once_one_line_each_without_values() -> None:
    # GIVEN a stack with five problems: a missing secret and app source, three bad values
    pasted = "ak_live_SECRET_0123"
    raw = {"environment": "qa", "logRetentionDays": "10", "alarmTopicArn": pasted,
           "segmentBatchSize": "lots"}
    present = {k: v for k, v in secrets().items() if k != "segmentToken"}
    # WHEN parsed
    error = error_for(raw, "qa", secret_values=present)
    # THEN one error names all of them, one line each, under a header, and echoes no value
    assert isinstance(error, pulumi.RunError)  # the engine prints it without a traceback
    assert set(error.keys) == {"segmentToken", "segmentAppSourceId", "logRetentionDays",
                               "alarmTopicArn", "segmentBatchSize"}
    lines = str(error).splitlines()
    assert lines[0] == "stack 'qa' has 5 configuration problems:"
    assert len(lines) == 6 and all(line.startswith("  config ") for line in lines[1:])
    assert pasted not in str(error) and "lots" not in str(error)


# -- one fact, one place: each test fails if a second copy drifts ------------------------------


def test_the_rules_read_exactly_the_keys_pulumi_yaml_declares() -> None:
    # The reader records what it asks for; a key added to one side only fails here.
    aws = parse_stack(dict(AWS_BASE), "staging", secrets(), "eu-central-1", ROOT).read_keys
    local = parse_stack(dict(LOCAL_BASE), "local", secrets(), None, ROOT).read_keys
    assert aws == local == set(declarations(ROOT))


def test_defaults_come_from_pulumi_yaml(tmp_path: Path) -> None:
    # GIVEN a project whose Pulumi.yaml declares another default
    document = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    document["config"]["maxReceiveCount"]["default"] = 7
    document["config"]["bridgeMapping"]["default"] = str(ROOT / "bridge_code" / "mapping.yaml")
    (tmp_path / "Pulumi.yaml").write_text(yaml.safe_dump(document))
    # WHEN a stack that doesn't set it is parsed THEN that default applies
    config = parse_stack(dict(AWS_BASE), "staging", secrets(), "eu-central-1", tmp_path).config
    assert config.max_receive_count == 7


def test_stack_defaults_agree_with_the_components_defaults() -> None:
    from components.segment_api import DEFAULT_REGION
    from components.segment_destination import SegmentWebhookDestinationArgs
    from components.segment_destination_payloads import DEFAULT_EVENT_TYPES

    declared = declarations(ROOT)
    component = SegmentWebhookDestinationArgs(source_id="", bridge_url="")
    assert declared["segmentBatching"].default == str(component.batching).lower()
    assert declared["segmentBatchSize"].default == str(component.batch_size)
    assert declared["sharedSecretRotation"].default == str(component.shared_secret_rotation)
    assert declared["segmentRegion"].default == DEFAULT_REGION
    # The lists default to empty: "the provider's own", written once, in the provider.
    assert declared["segmentEventTypes"].default == declared["userflowTopics"].default == "[]"
    assert parse(dict(AWS_BASE)).segment_event_types == DEFAULT_EVENT_TYPES


def test_event_types_are_the_destinations() -> None:
    from components.segment_destination_payloads import (
        SEGMENT_EVENT_TYPES,
        validate_destination_inputs,
    )

    for event_type in SEGMENT_EVENT_TYPES:
        assert parse({**AWS_BASE, "segmentEventTypes": f'["{event_type}"]'})
    for candidate in ("purchase", "Identify", "batch"):
        by_config = "segmentEventTypes" in error_for(
            {**AWS_BASE, "segmentEventTypes": f'["{candidate}"]'}).keys
        by_provider = dict(validate_destination_inputs(
            {"source_id": "s", "bridge_url": "https://b.example", "event_types": [candidate],
             "batch_size": 1, "shared_secret_rotation": 0, "name": "n",
             "subscription_name": "n"}))
        assert by_config and "event_types" in by_provider


TOPICS = ["*", "user", "user.created", "group.updated", "event", "event.tracked",
          "event.tracked.flow_started", "users", "event.tracked.Flow Started", "flow_started"]


@pytest.mark.parametrize("topic", TOPICS)
def test_topics_are_checked_by_the_one_userflow_rule(topic: str) -> None:
    from components.userflow_webhook import validate_webhook_inputs

    provider_ok = not validate_webhook_inputs(
        {"bridge_url": "https://b.example", "topics": [topic], "api_version": "2020-01-03"})
    try:
        parse({**AWS_BASE, "userflowTopics": f'["{topic}"]'})
        config_ok = True
    except ConfigError:
        config_ok = False
    assert config_ok == provider_ok


@pytest.mark.parametrize("slug", ["app-staging", "app_1", "App", "-x", "a b", "x" * 101])
def test_slugs_are_checked_by_the_one_segment_rule(slug: str) -> None:
    from components.segment_source import slug_problem

    try:
        parse({**AWS_BASE, "segmentAppSourceSlug": slug})
        config_ok = True
    except ConfigError:
        config_ok = False
    assert config_ok == (slug_problem(slug) is None)


URLS = ["https://x.example", "http://127.0.0.1:8080", "http://localhost:9", "http://[::1]:9",
        "http://x.example", "https://x.example/?a=1", "https://x.example/#f",
        "https://user:pw@x.example", "ftp://x.example", "x.example"]


@pytest.mark.parametrize("url", URLS)
def test_urls_are_checked_by_the_one_rule_of_the_providers(url: str) -> None:
    # The local stack allows loopback http, as the providers do; both agree on ::1 and queries.
    from components.segment_destination_payloads import validate_destination_inputs

    try:
        parse({**LOCAL_BASE, "bridgeUrl": url}, "local", region=None)
        config_ok = True
    except ConfigError:
        config_ok = False
    provider_ok = "bridge_url" not in dict(validate_destination_inputs(
        {"source_id": "s", "bridge_url": url, "event_types": ["track"], "batch_size": 1,
         "shared_secret_rotation": 0, "name": "n", "subscription_name": "n"}))
    assert config_ok == provider_ok


def test_route_paths_are_written_only_in_project_py() -> None:
    from components.project import SEGMENT_ROUTE_PATH, USERFLOW_ROUTE_PATH
    from components.segment_destination_payloads import bridge_endpoint
    from components.userflow_webhook import webhook_endpoint

    assert bridge_endpoint("https://b.example/") == "https://b.example" + SEGMENT_ROUTE_PATH
    assert webhook_endpoint("https://b.example") == "https://b.example" + USERFLOW_ROUTE_PATH
    for path in (ROOT / "components").rglob("*.py"):
        if path.name != "project.py":
            text = path.read_text()
            assert f'"{SEGMENT_ROUTE_PATH}"' not in text, path
            assert f'"{USERFLOW_ROUTE_PATH}"' not in text, path


# -- Segment region -----------------------------------------------------------------------------


def test_segment_region_eu_sets_both_segment_urls() -> None:
    from components.segment_api import REGIONS

    config = parse({**AWS_BASE, "segmentRegion": "eu"})
    assert config.segment_api_url == REGIONS["eu"].api_url == "https://eu1.api.segmentapis.com"
    assert config.segment_tracking_url == REGIONS["eu"].tracking_url
    assert REGIONS["eu"].tracking_url == "https://events.eu1.segmentapis.com"


@pytest.mark.parametrize("key", ["segmentApiUrl", "segmentTrackingUrl"])
def test_an_explicit_url_of_the_other_regions_host_is_refused(key: str) -> None:
    from components.segment_api import REGIONS

    us = {"segmentApiUrl": REGIONS["us"].api_url, "segmentTrackingUrl": REGIONS["us"].tracking_url}
    error = error_for({**AWS_BASE, "segmentRegion": "eu", key: us[key]})
    assert error.keys == (key,)
    assert "set segmentRegion: us" in line_for(error, key)


def test_explicit_urls_elsewhere_override_the_region_for_the_sandbox() -> None:
    config = parse({**LOCAL_BASE, "segmentRegion": "eu", "segmentApiUrl": "http://127.0.0.1:5",
                    "segmentTrackingUrl": "http://127.0.0.1:5/"}, "local", region=None)
    assert (config.segment_api_url, config.segment_tracking_url) == (
        "http://127.0.0.1:5", "http://127.0.0.1:5")


def test_the_aws_region_list_is_botocores() -> None:
    # botocore (pinned with the bridge) is where the list was taken from: a botocore upgrade
    # that knows a new Region fails here until AWS_REGIONS has it too.
    import importlib.util
    import json

    from components.config import AWS_REGIONS

    spec = importlib.util.find_spec("botocore")
    assert spec is not None and spec.origin is not None
    endpoints = Path(spec.origin).parent / "data" / "endpoints.json"
    partitions = json.loads(endpoints.read_text())["partitions"]
    listed = {region for p in partitions if p["partition"] in ("aws", "aws-cn", "aws-us-gov",
                                                                "aws-eusc")
              for region in p["regions"]}
    assert listed == AWS_REGIONS
