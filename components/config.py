"""The stack's configuration: read once from `userflow-segment:*`, validated, frozen.

`parse_config` is pure (raw strings in, `StackConfig` out) so every rule is unit-testable;
`load_config` is the only place that touches `pulumi.Config`. Every error names the key and
what is allowed; no error ever carries a value (a value could be a secret).
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar, cast
from urllib.parse import urlparse

import pulumi
from pulumi.runtime import config as pulumi_config

from components.project import PROJECT

NAMESPACE = PROJECT
PROJECT_ROOT = Path(__file__).resolve().parent.parent

Hosting = Literal["aws", "local"]
HOSTINGS: tuple[Hosting, ...] = ("aws", "local")
SEGMENT_EVENT_TYPES = ("identify", "track", "page", "screen", "group", "alias")
# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)
# Userflow webhook topics (docs/ARCHITECTURE.md, NOTES §5); `event.tracked.<name>` is open-ended.
USERFLOW_TOPIC = re.compile(
    r"^(\*|user(\.created|\.updated)?|group(\.created|\.updated)?|event(\.tracked(\.[a-z0-9_]+)?)?)$"
)
ENVIRONMENT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
SEGMENT_SOURCE_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
SEGMENT_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
SNS_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")

DEFAULT_MAPPING = "bridge_code/mapping.yaml"

# Keys whose value is a credential: read only as Pulumi secrets, never as plain strings.
SECRET_KEYS = ("segmentToken", "userflowApiKey")


class ConfigError(ValueError):
    """A config key is missing or invalid; the message names the key and what is allowed."""

    def __init__(self, key: str, allowed: str) -> None:
        qualified = key if ":" in key else f"{NAMESPACE}:{key}"
        super().__init__(f"config {qualified}: {allowed}")
        self.key = key


@dataclass(frozen=True)
class StackConfig:
    """Everything the program needs from one stack's `Pulumi.<stack>.yaml`."""

    environment: str
    """Equals the stack name; carried by every physical name and the Segment slug."""
    hosting: Hosting
    """`aws` builds the bridge on AWS; `local` builds no AWS resource (the sandbox)."""
    region: str | None
    """`aws:region` (required when hosting=aws)."""
    bridge_url: str | None
    """hosting=local only: where the local bridge listens."""
    segment_api_url: str
    segment_token: pulumi.Output[str]
    segment_tracking_url: str
    segment_app_source_id: str | None
    segment_app_source_slug: str | None
    create_app_source: bool
    segment_event_types: tuple[str, ...]
    segment_batching: bool
    segment_batch_size: int
    shared_secret_rotation: int
    userflow_api_url: str
    userflow_api_key: pulumi.Output[str]
    userflow_topics: tuple[str, ...] | None
    """None: the Userflow provider's own default topics."""
    bridge_mapping: Path
    ingest_timeout_seconds: int
    delivery_timeout_seconds: int
    ingest_reserved_concurrency: int
    """-1 leaves the function on the account's unreserved pool."""
    delivery_reserved_concurrency: int
    delivery_batch_size: int
    delivery_batch_window_seconds: int
    max_receive_count: int
    log_retention_days: int
    api_throttle_burst_limit: int
    api_throttle_rate_limit: float
    secret_recovery_window_days: int
    secrets_ttl_seconds: int
    alarm_topic_arn: str | None
    alarm_dead_letter_threshold: int
    alarm_delivery_errors_threshold: int
    alarm_api_5xx_rate_percent: float
    alarm_queue_age_seconds: int
    alarm_period_seconds: int
    alarm_evaluation_periods: int
    allow_destroy: bool

    @property
    def protect(self) -> bool:
        """Whether every resource of the stack refuses deletion."""
        return not self.allow_destroy

    @property
    def name_prefix(self) -> str:
        """Prefix of every physical name: the project and the environment."""
        return f"{NAMESPACE}-{self.environment}"


T = TypeVar("T")


class _Reader:
    """Typed access to the raw (string) config values, each failure naming its key."""

    def __init__(self, raw: Mapping[str, str]) -> None:
        self._raw = raw

    def has(self, key: str) -> bool:
        return self._raw.get(key) not in (None, "")

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self._raw.get(key)
        return default if value in (None, "") else value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.text(key)
        if value is None:
            return default
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(key, "must be true or false")

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.text(key)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(key, f"must be an integer from {low} to {high}") from None
        if not low <= number <= high:
            raise ConfigError(key, f"must be an integer from {low} to {high}")
        return number

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.text(key)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(key, f"must be a number from {low:g} to {high:g}") from None
        if not low <= number <= high:
            raise ConfigError(key, f"must be a number from {low:g} to {high:g}")
        return number

    def string_list(self, key: str) -> tuple[str, ...] | None:
        value = self.text(key)
        if value is None:
            return None
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(key, "must be a YAML list of strings") from None
        if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
            raise ConfigError(key, "must be a YAML list of strings")
        if not parsed:
            raise ConfigError(key, "must not be empty")
        if len(set(parsed)) != len(parsed):
            raise ConfigError(key, "must not repeat an entry")
        return tuple(parsed)

    def choice(self, key: str, default: T, allowed: tuple[T, ...]) -> T:
        value = self.text(key)
        if value is None:
            return default
        for option in allowed:
            if value == option:
                return option
        raise ConfigError(key, "must be one of " + ", ".join(map(str, allowed)))

    def url(self, key: str, default: str, local_ok: bool) -> str:
        value = cast(str, self.text(key, default))
        return _validated_url(key, value, local_ok)


def _validated_url(key: str, value: str, local_ok: bool) -> str:
    parsed = urlparse(value)
    loopback = parsed.hostname in ("127.0.0.1", "localhost")
    if parsed.scheme == "https" and parsed.hostname:
        return value.rstrip("/")
    if local_ok and parsed.scheme == "http" and loopback:
        return value.rstrip("/")
    allowed = "an https:// URL" + (" (or http://127.0.0.1:<port>)" if local_ok else "")
    raise ConfigError(key, f"must be {allowed}")


def parse_config(
    raw: Mapping[str, str],
    stack: str,
    secrets: Mapping[str, pulumi.Output[str]],
    region: str | None,
    default_userflow_topics: tuple[str, ...] | None = None,
    project_root: Path = PROJECT_ROOT,
    plaintext_keys: frozenset[str] = frozenset(),
) -> StackConfig:
    """Validate the raw config of `stack` (keys without the namespace, values as the engine
    hands them over: strings, lists as JSON) into a `StackConfig`.

    `secrets` holds the secret keys that are set, as Pulumi secrets: their presence is
    checked here, their values are never looked at. `plaintext_keys` names secret keys that
    were set without `--secret` (their value would sit readable in the stack file).
    """
    read = _Reader(raw)

    environment = read.text("environment")
    if environment is None:
        raise ConfigError("environment", f"is required and must equal the stack name ({stack})")
    if environment != stack:
        raise ConfigError("environment", f"must equal the stack name ({stack})")
    if not ENVIRONMENT_NAME.match(environment):
        raise ConfigError("environment", "must be lowercase letters, digits and '-', at most 20")

    hosting = read.choice("hosting", "aws", HOSTINGS)
    local = hosting == "local"
    if not local and not region:
        raise ConfigError("aws:region", "is required when hosting=aws")

    bridge_url: str | None = None
    if local:
        if not read.has("bridgeUrl"):
            raise ConfigError("bridgeUrl", "is required when hosting=local")
        bridge_url = _validated_url("bridgeUrl", cast(str, read.text("bridgeUrl")), True)
    elif read.has("bridgeUrl"):
        raise ConfigError("bridgeUrl", "is allowed only when hosting=local (aws: the API's URL)")

    for key in SECRET_KEYS:
        if key in plaintext_keys:
            raise ConfigError(
                key, f"must be encrypted: pulumi config set --secret {key} <value> "
                "(and make sure the plaintext never reached a commit)"
            )
        if key not in secrets:
            raise ConfigError(
                key, f"is required, as a secret: pulumi config set --secret {key} <value>"
            )

    create_app_source = read.boolean("createAppSource", False)
    if create_app_source and not local:
        raise ConfigError("createAppSource", "may be true only when hosting=local")
    source_id = read.text("segmentAppSourceId")
    source_slug = read.text("segmentAppSourceSlug")
    given = [k for k, v in (("segmentAppSourceId", source_id), ("segmentAppSourceSlug",
                                                                 source_slug)) if v]
    if create_app_source and given:
        raise ConfigError(given[0], "must be unset when createAppSource is true")
    if not create_app_source and len(given) != 1:
        raise ConfigError(
            "segmentAppSourceId",
            "exactly one of segmentAppSourceId or segmentAppSourceSlug is required"
            + (" (or createAppSource: true)" if local else ""),
        )
    if source_id is not None and not SEGMENT_SOURCE_ID.match(source_id):
        raise ConfigError("segmentAppSourceId", "must be a Segment source id (letters, digits)")
    if source_slug is not None and not SEGMENT_SLUG.match(source_slug):
        raise ConfigError("segmentAppSourceSlug", "must be a Segment slug (a-z, 0-9, '-', '_')")

    event_types = read.string_list("segmentEventTypes") or ("identify", "track", "group")
    unknown = [t for t in event_types if t not in SEGMENT_EVENT_TYPES]
    if unknown:
        raise ConfigError("segmentEventTypes", "entries must be among " + ", ".join(
            SEGMENT_EVENT_TYPES))

    topics = read.string_list("userflowTopics") or default_userflow_topics
    if topics is not None and not all(USERFLOW_TOPIC.match(t) for t in topics):
        raise ConfigError(
            "userflowTopics",
            "entries must be Userflow topics: *, user[.created|.updated], "
            "group[.created|.updated], event, event.tracked[.<name>]",
        )

    mapping = project_root / cast(str, read.text("bridgeMapping", DEFAULT_MAPPING))
    if mapping.suffix not in (".yaml", ".yml") or not mapping.is_file():
        raise ConfigError("bridgeMapping", "must be an existing .yaml file (relative path)")

    delivery_timeout = read.integer("deliveryTimeoutSeconds", 60, 1, 900)
    batch_size = read.integer("deliveryBatchSize", 10, 1, 10_000)
    batch_window = read.integer("deliveryBatchWindowSeconds", 1, 0, 300)
    if batch_size > 10 and batch_window < 1:
        # AWS rule for SQS event source mappings.
        raise ConfigError("deliveryBatchWindowSeconds", "must be >= 1 when deliveryBatchSize > 10")

    recovery = read.integer("secretRecoveryWindowDays", 30, 0, 30)
    if 0 < recovery < 7:
        raise ConfigError("secretRecoveryWindowDays", "must be 0 (delete at once) or 7 to 30")

    alarm_topic = read.text("alarmTopicArn")
    if alarm_topic is not None and not SNS_TOPIC_ARN.match(alarm_topic):
        raise ConfigError("alarmTopicArn", "must be an SNS topic ARN (arn:aws:sns:...)")

    period = read.integer("alarmPeriodSeconds", 300, 10, 86_400)
    if period not in (10, 30) and period % 60:
        raise ConfigError("alarmPeriodSeconds", "must be 10, 30 or a multiple of 60")

    log_retention = read.integer("logRetentionDays", 30, 1, 3653)
    if log_retention not in LOG_RETENTION_DAYS:
        raise ConfigError("logRetentionDays", "must be one of " + ", ".join(
            map(str, LOG_RETENTION_DAYS)))

    return StackConfig(
        environment=environment,
        hosting=hosting,
        region=region,
        bridge_url=bridge_url,
        segment_api_url=read.url("segmentApiUrl", "https://api.segmentapis.com", local),
        segment_token=secrets["segmentToken"],
        segment_tracking_url=read.url("segmentTrackingUrl", "https://api.segment.io", local),
        segment_app_source_id=source_id,
        segment_app_source_slug=source_slug,
        create_app_source=create_app_source,
        segment_event_types=event_types,
        segment_batching=read.boolean("segmentBatching", False),
        segment_batch_size=read.integer("segmentBatchSize", 100, 1, 1000),
        shared_secret_rotation=read.integer("sharedSecretRotation", 0, 0, 1_000_000),
        userflow_api_url=read.url("userflowApiUrl", "https://api.userflow.com", local),
        userflow_api_key=secrets["userflowApiKey"],
        userflow_topics=topics,
        bridge_mapping=mapping,
        # API Gateway HTTP APIs give an integration at most 30 s; keep the function below it.
        ingest_timeout_seconds=read.integer("ingestTimeoutSeconds", 10, 1, 29),
        delivery_timeout_seconds=delivery_timeout,
        ingest_reserved_concurrency=_concurrency(read, "ingestReservedConcurrency", 20),
        delivery_reserved_concurrency=_concurrency(read, "deliveryReservedConcurrency", 5),
        delivery_batch_size=batch_size,
        delivery_batch_window_seconds=batch_window,
        # Above the bridge's own poison count (5): it dead-letters with a reason first, and
        # the queue's redrive policy is the backstop.
        max_receive_count=read.integer("maxReceiveCount", 10, 1, 1000),
        log_retention_days=log_retention,
        api_throttle_burst_limit=read.integer("apiThrottleBurstLimit", 100, 1, 5000),
        api_throttle_rate_limit=read.number("apiThrottleRateLimit", 50.0, 1.0, 10_000.0),
        secret_recovery_window_days=recovery,
        secrets_ttl_seconds=read.integer("secretsTtlSeconds", 300, 0, 3600),
        alarm_topic_arn=alarm_topic,
        alarm_dead_letter_threshold=read.integer("alarmDeadLetterThreshold", 1, 1, 100_000),
        alarm_delivery_errors_threshold=read.integer("alarmDeliveryErrorsThreshold", 1, 1,
                                                     100_000),
        alarm_api_5xx_rate_percent=read.number("alarmApi5xxRatePercent", 5.0, 0.1, 100.0),
        # Three failed receives in a row at the default visibility timeout (6 x 60 s); at most
        # a day, far below the work queue's retention, so it fires before anything expires.
        alarm_queue_age_seconds=read.integer("alarmQueueAgeSeconds", 900, 60, 86_400),
        alarm_period_seconds=period,
        alarm_evaluation_periods=read.integer("alarmEvaluationPeriods", 1, 1, 100),
        # Safe by default: only production refuses destroy unless the stack file says so.
        allow_destroy=read.boolean("allowDestroy", environment != "production"),
    )


def _concurrency(read: _Reader, key: str, default: int) -> int:
    value = read.integer(key, default, -1, 1000)
    if value == 0:
        raise ConfigError(key, "must be -1 (unreserved) or 1 to 1000; 0 would disable it")
    return value


KNOWN_KEYS = (
    "environment", "hosting", "bridgeUrl", "segmentApiUrl", "segmentToken",
    "segmentTrackingUrl", "segmentAppSourceId", "segmentAppSourceSlug", "createAppSource",
    "segmentEventTypes", "segmentBatching", "segmentBatchSize", "sharedSecretRotation",
    "userflowApiUrl", "userflowApiKey", "userflowTopics", "bridgeMapping",
    "ingestTimeoutSeconds", "deliveryTimeoutSeconds", "ingestReservedConcurrency",
    "deliveryReservedConcurrency", "deliveryBatchSize", "deliveryBatchWindowSeconds",
    "maxReceiveCount", "logRetentionDays", "apiThrottleBurstLimit", "apiThrottleRateLimit",
    "secretRecoveryWindowDays", "secretsTtlSeconds", "alarmTopicArn",
    "alarmDeadLetterThreshold", "alarmDeliveryErrorsThreshold", "alarmApi5xxRatePercent",
    "alarmPeriodSeconds", "alarmEvaluationPeriods", "allowDestroy", "alarmQueueAgeSeconds",
)


def unknown_keys(config_keys: Iterable[str]) -> list[str]:
    """Keys of this namespace the program does not read: most likely typos, which would
    otherwise silently leave the default in place."""
    prefix = f"{NAMESPACE}:"
    return sorted(
        key for key in config_keys
        if key.startswith(prefix) and key.removeprefix(prefix) not in KNOWN_KEYS
    )


def _stack_config_keys() -> set[str]:
    """Every config key the engine handed the program (mocks set them in-process)."""
    keys = set(pulumi.runtime.get_config_env())
    keys.update(pulumi_config.CONFIG.get())
    return keys


def _default_userflow_topics() -> tuple[str, ...] | None:
    """The Userflow provider owns the default topic list; None lets it apply its own."""
    try:
        userflow_webhook = importlib.import_module("components.userflow_webhook")
    except ImportError:
        return None
    default = getattr(userflow_webhook, "DEFAULT_TOPICS", None)
    return tuple(default) if default else None


def load_config(
    config_factory: Callable[[str], pulumi.Config] = pulumi.Config,
) -> StackConfig:
    """Read and validate this stack's config; raises ConfigError naming the bad key."""
    config = config_factory(NAMESPACE)
    raw: dict[str, str] = {}
    for key in KNOWN_KEYS:
        if key in SECRET_KEYS:
            continue
        value = config.get(key)
        if value is not None:
            raw[key] = value
    secrets: dict[str, pulumi.Output[str]] = {}
    plaintext: set[str] = set()
    for key in SECRET_KEYS:
        secret = config.get_secret(key)
        if secret is not None:
            secrets[key] = secret
            if not pulumi.runtime.is_config_secret(f"{NAMESPACE}:{key}"):
                plaintext.add(key)
    for key in unknown_keys(_stack_config_keys()):
        pulumi.log.warn(f"config {key}: not a key of this program (typo?); it is ignored")
    region = config_factory("aws").get("region")
    return parse_config(raw, pulumi.get_stack(), secrets, region, _default_userflow_topics(),
                        plaintext_keys=frozenset(plaintext))
