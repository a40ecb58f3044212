"""The config rules, pure: raw strings in, StackConfig or an error naming the key out."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

from components.config import (
    KNOWN_KEYS,
    LOG_RETENTION_DAYS,
    SECRET_KEYS,
    ConfigError,
    StackConfig,
    parse_config,
    unknown_keys,
)

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
    assert config.allow_destroy and not config.protect


def test_production_is_protected_unless_allow_destroy_says_otherwise() -> None:
    production = {**AWS_BASE, "environment": "production", "segmentAppSourceSlug": "app"}
    assert parse(production, "production").protect
    assert not parse({**production, "allowDestroy": "true"}, "production").protect
    assert parse({**AWS_BASE, "allowDestroy": "false"}).protect


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
        ({**AWS_BASE, "segmentEventTypes": "[]"}, "segmentEventTypes", "not be empty"),
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
        ({**AWS_BASE, "alarmTopicArn": "my-topic"}, "alarmTopicArn", "SNS topic ARN"),
        ({**AWS_BASE, "alarmPeriodSeconds": "45"}, "alarmPeriodSeconds", "multiple of 60"),
        ({**AWS_BASE, "apiThrottleRateLimit": "0"}, "apiThrottleRateLimit", "from 1 to"),
        ({**AWS_BASE, "bridgeMapping": "bridge_code/missing.yaml"}, "bridgeMapping", ".yaml"),
        ({**AWS_BASE, "allowDestroy": "maybe"}, "allowDestroy", "true or false"),
    ],
)
def test_each_invalid_value_is_named_with_what_is_allowed(
    raw: dict[str, str], key: str, allowed: str
) -> None:
    error = error_for(raw)
    assert error.key == key
    assert f"userflow-segment:{key}" in str(error)
    assert allowed in str(error)


def test_aws_hosting_needs_a_region() -> None:
    error = error_for(dict(AWS_BASE), region=None)
    assert error.key == "aws:region"
    assert "config aws:region" in str(error)


@pytest.mark.parametrize("missing", SECRET_KEYS)
def test_each_secret_is_required_and_the_error_says_how_to_set_it(missing: str) -> None:
    present = {k: v for k, v in secrets().items() if k != missing}
    error = error_for(dict(AWS_BASE), secret_values=present)
    assert error.key == missing
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
    assert error_for(raw, "local", region=None).key == "bridgeUrl"


def test_create_app_source_excludes_an_explicit_app_source() -> None:
    error = error_for({**LOCAL_BASE, "segmentAppSourceSlug": "app"}, "local", region=None)
    assert error.key == "segmentAppSourceSlug"


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


def test_every_secret_key_is_a_known_key() -> None:
    assert set(SECRET_KEYS) <= set(KNOWN_KEYS)
    assert len(set(KNOWN_KEYS)) == len(KNOWN_KEYS)


def test_unknown_keys_of_the_namespace_are_reported_and_others_left_alone() -> None:
    keys = ["userflow-segment:logRetentionDays", "userflow-segment:logRetentionDay",
            "aws:region", "userflow-segment:Hosting"]
    assert unknown_keys(keys) == ["userflow-segment:Hosting", "userflow-segment:logRetentionDay"]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_a_secret_set_in_plaintext_is_refused(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(dict(AWS_BASE), "staging", secrets(), "eu-central-1", project_root=ROOT,
                     plaintext_keys=frozenset({key}))
    assert caught.value.key == key
    assert "must be encrypted" in str(caught.value)
