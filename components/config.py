"""The stack's configuration: read once from `userflow-segment:*`, validated, frozen.

Two layers, each saying a thing once:
- `Pulumi.yaml`'s typed `config:` block declares every key: its type, whether it is secret,
  its default and what it is for. The engine checks those before the program runs and lists
  every missing key at once. `components/config_keys.py` reads the same block
  (`declarations`) for the defaults, so a run under mocks sees exactly what a real run sees.
- `parse_config` (pure: raw strings in, `StackConfig` out) holds the ranges and cross-key
  rules a type can't say. It collects every problem and raises them as one `ConfigError`
  (a `pulumi.RunError`, which the engine prints as a message, without a traceback), one line
  per problem. No message ever carries a value (a value could be a secret).

`load_config` is the only place that touches `pulumi.Config`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast
from urllib.parse import urlsplit

import pulumi
from pulumi.runtime import config as pulumi_config

from components.adoption import ON_DESTROY_CHOICES, AdoptionConfig, adopt_from
from components.config_keys import (
    NAMESPACE,
    PROJECT_ROOT,
    Problem,
    Reader,
    declarations,
    ignored_keys,
)
from components.ledger_capacity import LedgerCapacity, read_ledger_capacity
from components.project import USERFLOW_INGRESSES, UserflowIngress
from components.segment_api import REGIONS, Region
from components.segment_destination_payloads import DEFAULT_EVENT_TYPES, SEGMENT_EVENT_TYPES
from components.segment_source import SLUG_PATTERN
from components.userflow_api import DEFAULT_API_URL as USERFLOW_API_URL
from components.userflow_api import TOPIC_FORMS, TOPIC_PATTERN

Hosting = Literal["aws", "local"]
HOSTINGS: tuple[Hosting, ...] = ("aws", "local")
SEGMENT_REGIONS: tuple[Region, ...] = tuple(REGIONS)
# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)
# AWS Regions by partition, as botocore 1.44.8 lists them (botocore/data/endpoints.json) and
# https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-regions.html documents
# them. A Region launched later goes here.
AWS_REGIONS = frozenset({
    "af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2",
    "ap-northeast-3", "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2",
    "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-6", "ap-southeast-7",
    "ca-central-1", "ca-west-1", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1",
    "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3", "il-central-1", "me-central-1",
    "me-south-1", "mx-central-1", "sa-east-1", "us-east-1", "us-east-2", "us-west-1",
    "us-west-2",
    "cn-north-1", "cn-northwest-1",  # aws-cn
    "us-gov-east-1", "us-gov-west-1",  # aws-us-gov
    "eusc-de-east-1",  # aws-eusc (the AWS European Sovereign Cloud)
})
ENVIRONMENT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
SEGMENT_SOURCE_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
SNS_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
SNS_TOPIC_ARN_FORM = "arn:aws:sns:<region>:<12-digit account id>:<topic name>"

# Keys whose value is a credential: read only as Pulumi secrets, never as plain strings.
SECRET_KEYS = ("segmentToken", "userflowApiKey")
# The same, but optional: only needed by one feature (adoption: components/adoption.py).
OPTIONAL_SECRET_KEYS = ("adoptDestinationSharedSecret",)
# Adoption's keys: each hand-made object by id or by name, never both.
ADOPT_KEY_PAIRS = (
    ("adoptUserflowSourceId", "adoptUserflowSourceSlug"),
    ("adoptDestinationId", "adoptDestinationName"),
    ("adoptUserflowWebhookId", "adoptUserflowWebhookUrl"),
)



class ConfigError(pulumi.RunError):
    """The stack's config has problems; the message lists each, one line, naming its key.

    A `pulumi.RunError`, so the engine shows the message alone, without a Python traceback.
    """

    def __init__(self, problems: Sequence[Problem], stack: str = "") -> None:
        self.problems = tuple(problems)
        self.keys = tuple(p.key for p in self.problems)
        self.key = self.keys[0]
        count = len(self.problems)
        subject = f"stack '{stack}'" if stack else "the stack"
        header = (f"{subject} has a configuration problem" if count == 1
                  else f"{subject} has {count} configuration problems")
        super().__init__("\n".join([header + ":", *(f"  {p}" for p in self.problems)]))


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
    userflow_ingress: UserflowIngress
    """hosting=aws: where Userflow's webhooks arrive (the API, or the ingest function's URL)."""
    segment_region: Region
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
    write_key_rotation: int
    userflow_webhook_rotation: int
    rotation_overlap_seconds: int
    """Wait between a rotation's steps; at least secrets_ttl_seconds (the bridge's cache)."""
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
    ledger_capacity: LedgerCapacity
    """On demand, or provisioned with auto scaling (the ledger* keys)."""
    alarm_topic_arn: str | None
    alarm_dead_letter_threshold: int
    alarm_delivery_errors_threshold: int
    alarm_api_5xx_rate_percent: float
    alarm_queue_age_seconds: int
    alarm_ledger_throttled_threshold: int
    """Throttled ledger requests per period that raise the alarm (provisioned only)."""
    alarm_period_seconds: int
    alarm_evaluation_periods: int
    allow_destroy: bool
    adoption: AdoptionConfig = field(default_factory=AdoptionConfig)
    """Hand-made objects to take over at create (none by default)."""

    @property
    def protect(self) -> bool:
        """Whether every resource of the stack refuses deletion."""
        return not self.allow_destroy

    @property
    def name_prefix(self) -> str:
        """Prefix of every physical name: the project and the environment."""
        return f"{NAMESPACE}-{self.environment}"



# -- the rules ------------------------------------------------------------------------------------


def _environment(read: Reader, stack: str) -> str:
    environment = read.text("environment")
    if environment is None:
        read.fail("environment", f"is required and must equal the stack name ({stack})")
        return stack
    if environment != stack:
        read.fail("environment", f"must equal the stack name ({stack})")
    elif not ENVIRONMENT_NAME.match(environment):
        read.fail("environment", "must be lowercase letters, digits and '-', at most 20")
    return environment


def _region(read: Reader, region: str | None, hosting: Hosting) -> None:
    if hosting == "local":
        return
    if not region:
        read.fail("aws:region", "is required when hosting=aws")
    elif region not in AWS_REGIONS:
        near = difflib.get_close_matches(region, sorted(AWS_REGIONS), n=1, cutoff=0.7)
        hint = f" (did you mean {near[0]}?)" if near else ""
        read.fail("aws:region", f"must be an AWS Region code such as eu-central-1{hint}")


def _bridge_url(read: Reader, local: bool) -> str | None:
    given = read.text("bridgeUrl")
    if not local:
        if given:
            read.fail("bridgeUrl", "is allowed only when hosting=local (aws: the API's URL)")
        return None
    if not given:
        read.fail("bridgeUrl", "is required when hosting=local")
        return None
    return read.url("bridgeUrl", given, loopback_http=True)


def _userflow_ingress(read: Reader, local: bool, ingest_concurrency: int) -> UserflowIngress:
    ingress = read.choice("userflowIngress", USERFLOW_INGRESSES)
    if ingress == "functionUrl" and local:
        read.fail("userflowIngress", "may be functionUrl only when hosting=aws (the local "
                                     "bridge serves every route at bridgeUrl)")
    elif (ingress == "functionUrl" and ingest_concurrency < 1
          and not read.failed("ingestReservedConcurrency")):
        # No API throttle in front of the URL: the reservation is the only bound on it.
        read.fail("ingestReservedConcurrency", "must be 1 to 1000 when userflowIngress is "
                                               "functionUrl: it is the function URL's only bound")
    return ingress


def _secrets(
    read: Reader, secrets: Mapping[str, pulumi.Output[str]], plaintext_keys: Collection[str]
) -> None:
    for key in SECRET_KEYS:
        read.asked.add(key)
        if key in plaintext_keys:
            read.fail(key, f"must be encrypted: pulumi config set --secret {key} <value> "
                           "(and make sure the plaintext never reached a commit)")
        elif key not in secrets:
            read.fail(key, f"is required, as a secret: pulumi config set --secret {key} <value>")


def _app_source(read: Reader, local: bool) -> tuple[bool, str | None, str | None]:
    create = read.boolean("createAppSource")
    source_id = read.text("segmentAppSourceId")
    slug = read.text("segmentAppSourceSlug")
    if create and not local:
        read.fail("createAppSource", "may be true only when hosting=local")
    given = [k for k, v in (("segmentAppSourceId", source_id),
                            ("segmentAppSourceSlug", slug)) if v]
    if create and given:
        read.fail(given[0], "must be unset when createAppSource is true")
    elif not create and len(given) != 1:
        read.fail("segmentAppSourceId",
                  "exactly one of segmentAppSourceId or segmentAppSourceSlug is required"
                  + (" (or createAppSource: true)" if local else ""))
    if source_id is not None and not SEGMENT_SOURCE_ID.match(source_id):
        read.fail("segmentAppSourceId", "must be a Segment source id (letters, digits)")
    if slug is not None and not SLUG_PATTERN.match(slug):
        read.fail("segmentAppSourceSlug", "must be a Segment slug (a-z, 0-9, '-', '_')")
    return create, source_id, slug


def _segment_urls(read: Reader, local: bool) -> tuple[Region, str, str]:
    """The region's official hosts, or explicit overrides (the sandbox's emulator) that must
    not point at another region's official host."""
    region = read.choice("segmentRegion", SEGMENT_REGIONS)
    hosts = REGIONS[region]
    api_url = read.url("segmentApiUrl", hosts.api_url, local)
    tracking_url = read.url("segmentTrackingUrl", hosts.tracking_url, local)
    for key, url in (("segmentApiUrl", api_url), ("segmentTrackingUrl", tracking_url)):
        owner = _official_region(url)
        if owner is not None and owner != region:
            read.fail(key, f"is Segment's {owner} host but segmentRegion is {region}: set "
                           f"segmentRegion: {owner}, or leave {key} unset")
    return region, api_url, tracking_url


def _official_region(url: str) -> Region | None:
    host = urlsplit(url).hostname
    for region, hosts in REGIONS.items():
        if host in (urlsplit(hosts.api_url).hostname, urlsplit(hosts.tracking_url).hostname):
            return region
    return None


def _event_types(read: Reader) -> tuple[str, ...]:
    event_types = read.string_list("segmentEventTypes") or DEFAULT_EVENT_TYPES
    if any(t not in SEGMENT_EVENT_TYPES for t in event_types):
        read.fail("segmentEventTypes", "entries must be among " + ", ".join(SEGMENT_EVENT_TYPES))
    return event_types


def _topics(read: Reader) -> tuple[str, ...] | None:
    topics = read.string_list("userflowTopics") or None
    if topics is not None and not all(TOPIC_PATTERN.match(t) for t in topics):
        read.fail("userflowTopics", f"entries must be Userflow topics: {TOPIC_FORMS}")
    return topics


def _mapping(read: Reader, project_root: Path) -> Path:
    mapping = project_root / cast(str, read.text("bridgeMapping"))
    if mapping.suffix not in (".yaml", ".yml") or not mapping.is_file():
        read.fail("bridgeMapping", "must be an existing .yaml file (relative path)")
    return mapping


def _alarm_topic(read: Reader) -> str | None:
    arn = read.text("alarmTopicArn")
    if arn is not None and not SNS_TOPIC_ARN.match(arn):
        read.fail("alarmTopicArn", f"must be an SNS topic ARN: {SNS_TOPIC_ARN_FORM} "
                                   "(letters, digits, '-' and '_' in the name; "
                                   "e.g. arn:aws:sns:eu-central-1:123456789012:on-call)")
    return arn


def _concurrency(read: Reader, key: str) -> int:
    value = read.integer(key, -1, 1000)
    if value == 0:
        read.fail(key, "must be -1 (unreserved) or 1 to 1000; 0 would disable it")
    return value


def _adoption(
    read: Reader, secrets: Mapping[str, pulumi.Output[str]], plaintext_keys: Collection[str]
) -> AdoptionConfig:
    """The hand-made objects to adopt: at most one key of each pair, the destination's current
    shared secret exactly when a destination is adopted, and what destroy does to them."""
    adopts = []
    for id_key, name_key in ADOPT_KEY_PAIRS:
        object_id, name = read.text(id_key), read.text(name_key)
        if object_id and name:
            read.fail(name_key, f"must be unset when {id_key} is set (adopt by one or the other)")
            name = None
        adopts.append(adopt_from(id_key, object_id, name_key, name))
    source_id = read.text("adoptUserflowSourceId")
    if source_id is not None and not SEGMENT_SOURCE_ID.match(source_id):
        read.fail("adoptUserflowSourceId", "must be a Segment source id (letters, digits)")
    slug = read.text("adoptUserflowSourceSlug")
    if slug is not None and not SLUG_PATTERN.match(slug):
        read.fail("adoptUserflowSourceSlug", "must be a Segment slug (a-z, 0-9, '-', '_')")
    source, destination, webhook = adopts
    key = OPTIONAL_SECRET_KEYS[0]
    read.asked.add(key)
    shared_secret = secrets.get(key)
    if key in plaintext_keys:
        read.fail(key, f"must be encrypted: pulumi config set --secret {key} <value> "
                       "(and make sure the plaintext never reached a commit)")
    elif destination is not None and shared_secret is None:
        read.fail(key, "is required when adopting a destination: the shared secret it signs "
                       f"with now, set with pulumi config set --secret {key} <value>")
    elif destination is None and shared_secret is not None:
        read.fail(key, "is set but no destination is adopted (adoptDestinationId or "
                       "adoptDestinationName)")
    return AdoptionConfig(
        userflow_source=source,
        destination=destination,
        destination_shared_secret=shared_secret if destination is not None else None,
        userflow_webhook=webhook,
        on_destroy=read.choice("adoptedOnDestroy", ON_DESTROY_CHOICES),
    )


@dataclass(frozen=True)
class Parsed:
    config: StackConfig
    """Valid only when there are no problems (a bad value's default stands in for it)."""
    problems: tuple[Problem, ...]
    read_keys: frozenset[str]
    """Every key the rules asked for: any other key of the namespace is one nobody reads."""

    def valid(self, stack: str) -> StackConfig:
        """The config, or one ConfigError listing every problem."""
        if self.problems:
            raise ConfigError(self.problems, stack)
        return self.config


def parse_stack(
    raw: Mapping[str, str], stack: str, secrets: Mapping[str, pulumi.Output[str]],
    region: str | None, project_root: Path = PROJECT_ROOT,
    plaintext_keys: Collection[str] = frozenset(),
) -> Parsed:
    """Validate the raw config of `stack` (keys without the namespace, values as the engine
    hands them over: strings, lists as JSON), collecting every problem.

    `secrets` holds the secret keys that are set, as Pulumi secrets: their presence is
    checked here, their values are never looked at. `plaintext_keys` names secret keys that
    were set without `--secret` (their value would sit readable in the stack file).
    """
    read = Reader(raw, declarations(project_root))
    environment = _environment(read, stack)
    hosting = read.choice("hosting", HOSTINGS)
    local = hosting == "local"
    _region(read, region, hosting)
    bridge_url = _bridge_url(read, local)
    _secrets(read, secrets, plaintext_keys)
    create_app_source, source_id, source_slug = _app_source(read, local)
    segment_region, segment_api_url, segment_tracking_url = _segment_urls(read, local)

    batch_size = read.integer("deliveryBatchSize", 1, 10_000)
    batch_window = read.integer("deliveryBatchWindowSeconds", 0, 300)
    if batch_size > 10 and batch_window < 1 and not read.failed("deliveryBatchSize"):
        # AWS rule for SQS event source mappings.
        read.fail("deliveryBatchWindowSeconds", "must be >= 1 when deliveryBatchSize > 10")
    recovery = read.integer("secretRecoveryWindowDays", 0, 30)
    if 0 < recovery < 7:
        read.fail("secretRecoveryWindowDays", "must be 0 (delete at once) or 7 to 30")
    period = read.integer("alarmPeriodSeconds", 10, 86_400)
    if period not in (10, 30) and period % 60:
        read.fail("alarmPeriodSeconds", "must be 10, 30 or a multiple of 60")
    secrets_ttl = read.integer("secretsTtlSeconds", 0, 3600)
    overlap = read.integer("rotationOverlapSeconds", 0, 7 * 86_400)
    if overlap < secrets_ttl and not read.failed("secretsTtlSeconds"):
        # A rotation step must wait until every bridge function re-read its secrets.
        read.fail("rotationOverlapSeconds", "must be >= secretsTtlSeconds")
    log_retention = read.integer("logRetentionDays", 1, 3653)
    if log_retention not in LOG_RETENTION_DAYS and not read.failed("logRetentionDays"):
        read.fail("logRetentionDays", "must be one of " + ", ".join(map(str, LOG_RETENTION_DAYS)))
    ingest_concurrency = _concurrency(read, "ingestReservedConcurrency")
    userflow_ingress = _userflow_ingress(read, local, ingest_concurrency)

    config = StackConfig(
        environment=environment,
        hosting=hosting,
        region=region,
        bridge_url=bridge_url,
        userflow_ingress=userflow_ingress,
        segment_region=segment_region,
        segment_api_url=segment_api_url,
        segment_token=secrets.get("segmentToken", pulumi.Output.secret("")),
        segment_tracking_url=segment_tracking_url,
        segment_app_source_id=source_id,
        segment_app_source_slug=source_slug,
        create_app_source=create_app_source,
        segment_event_types=_event_types(read),
        segment_batching=read.boolean("segmentBatching"),
        segment_batch_size=read.integer("segmentBatchSize", 1, 1000),
        shared_secret_rotation=read.integer("sharedSecretRotation", 0, 1_000_000),
        write_key_rotation=read.integer("writeKeyRotation", 0, 1_000_000),
        userflow_webhook_rotation=read.integer("userflowWebhookRotation", 0, 1_000_000),
        rotation_overlap_seconds=overlap,
        userflow_api_url=read.url("userflowApiUrl", USERFLOW_API_URL, local),
        userflow_api_key=secrets.get("userflowApiKey", pulumi.Output.secret("")),
        userflow_topics=_topics(read),
        bridge_mapping=_mapping(read, project_root),
        # API Gateway HTTP APIs give an integration at most 30 s; keep the function below it.
        ingest_timeout_seconds=read.integer("ingestTimeoutSeconds", 1, 29),
        delivery_timeout_seconds=read.integer("deliveryTimeoutSeconds", 1, 900),
        ingest_reserved_concurrency=ingest_concurrency,
        delivery_reserved_concurrency=_concurrency(read, "deliveryReservedConcurrency"),
        delivery_batch_size=batch_size,
        delivery_batch_window_seconds=batch_window,
        # Above the bridge's own poison count (5): it dead-letters with a reason first, and
        # the queue's redrive policy is the backstop.
        max_receive_count=read.integer("maxReceiveCount", 1, 1000),
        log_retention_days=log_retention,
        api_throttle_burst_limit=read.integer("apiThrottleBurstLimit", 1, 5000),
        api_throttle_rate_limit=read.number("apiThrottleRateLimit", 1.0, 10_000.0),
        secret_recovery_window_days=recovery,
        secrets_ttl_seconds=secrets_ttl,
        ledger_capacity=read_ledger_capacity(read),
        alarm_topic_arn=_alarm_topic(read),
        alarm_dead_letter_threshold=read.integer("alarmDeadLetterThreshold", 1, 100_000),
        alarm_delivery_errors_threshold=read.integer("alarmDeliveryErrorsThreshold", 1, 100_000),
        alarm_api_5xx_rate_percent=read.number("alarmApi5xxRatePercent", 0.1, 100.0),
        # Three failed receives in a row at the default visibility timeout (6 x 60 s); at most
        # a day, far below the work queue's retention, so it fires before anything expires.
        alarm_queue_age_seconds=read.integer("alarmQueueAgeSeconds", 60, 86_400),
        alarm_ledger_throttled_threshold=read.integer("alarmLedgerThrottledThreshold", 1,
                                                      100_000),
        alarm_period_seconds=period,
        alarm_evaluation_periods=read.integer("alarmEvaluationPeriods", 1, 100),
        # Safe by default: every stack refuses destroy unless its stack file says
        # allowDestroy: true (staging's and the sandbox's do), whatever the stack is called.
        allow_destroy=read.boolean("allowDestroy"),
        adoption=_adoption(read, secrets, plaintext_keys),
    )
    return Parsed(config, tuple(read.problems), frozenset(read.asked))


def parse_config(
    raw: Mapping[str, str], stack: str, secrets: Mapping[str, pulumi.Output[str]],
    region: str | None, project_root: Path = PROJECT_ROOT,
    plaintext_keys: Collection[str] = frozenset(),
) -> StackConfig:
    """The valid config; raises one ConfigError listing every problem."""
    return parse_stack(raw, stack, secrets, region, project_root, plaintext_keys).valid(stack)



def _stack_config_keys() -> set[str]:
    """Every config key the engine handed the program (mocks set them in-process)."""
    keys = set(pulumi.runtime.get_config_env())
    keys.update(pulumi_config.CONFIG.get())
    return keys


def load_config(config_factory: Callable[[str], pulumi.Config] = pulumi.Config) -> StackConfig:
    """Read and validate this stack's config; raises one ConfigError naming every problem."""
    config = config_factory(NAMESPACE)
    all_keys = _stack_config_keys()
    prefix = f"{NAMESPACE}:"
    raw: dict[str, str] = {}
    for key in sorted(k.removeprefix(prefix) for k in all_keys if k.startswith(prefix)):
        if key in SECRET_KEYS or key in OPTIONAL_SECRET_KEYS:
            continue
        value = config.get(key)
        if value is not None:
            raw[key] = value
    secrets: dict[str, pulumi.Output[str]] = {}
    plaintext: set[str] = set()
    for key in (*SECRET_KEYS, *OPTIONAL_SECRET_KEYS):
        if key in OPTIONAL_SECRET_KEYS and not config.get(key):
            continue  # unset: the engine hands over its declared default, ""
        secret = config.get_secret(key)
        if secret is not None:
            secrets[key] = secret
            if not pulumi.runtime.is_config_secret(f"{NAMESPACE}:{key}"):
                plaintext.add(key)
    region = config_factory("aws").get("region")
    stack = pulumi.get_stack()
    parsed = parse_stack(raw, stack, secrets, region, plaintext_keys=plaintext)
    # Ignored keys first: a typo'd key is often the cause of a problem below it.
    for warning in ignored_keys(all_keys, parsed.read_keys):
        pulumi.log.warn(warning)
    return parsed.valid(stack)
