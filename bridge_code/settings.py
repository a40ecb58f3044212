"""The bridge's settings, read once from the environment variables in docs/ARCHITECTURE.md."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bridge_code.mapping import default_mapping_path

DEFAULT_USERFLOW_API_URL = "https://api.userflow.com"
DEFAULT_SEGMENT_TRACKING_URL = "https://api.segment.io"
DEFAULT_SECRETS_TTL_SECONDS = 300.0
# Segment retries a failed delivery for up to 4 hours (its Webhooks destination docs); a day
# leaves room for delays inside Segment and equals its own messageId dedup horizon.
DEFAULT_ACCEPTANCE_WINDOW_SECONDS = 24 * 3600.0


class SettingsError(ValueError):
    """An environment variable holds a value the bridge cannot use."""


@dataclass(frozen=True)
class BridgeSettings:
    """Where the bridge's queues, secrets and upstreams are; tuning knobs for retries."""

    queue_url: str | None = None
    dead_letter_queue_url: str | None = None
    segment_shared_secret_arn: str | None = None
    userflow_webhook_secret_arn: str | None = None
    userflow_api_key_arn: str | None = None
    segment_write_key_arn: str | None = None
    userflow_api_url: str = DEFAULT_USERFLOW_API_URL
    segment_tracking_url: str = DEFAULT_SEGMENT_TRACKING_URL
    mapping_path: Path | None = None
    secrets_ttl_seconds: float = DEFAULT_SECRETS_TTL_SECONDS
    # The replay ledger's DynamoDB table (bridge_code/ledger.py).
    ledger_table: str | None = None
    # Whether the stack's Segment destination batches: only then may a request be an array
    # authenticated by its first element alone. Known from the stack, never from a request.
    segment_batching: bool = False
    # How old a signed Segment event (receivedAt, else timestamp) may be when it arrives.
    acceptance_window_seconds: float = DEFAULT_ACCEPTANCE_WINDOW_SECONDS
    # The knobs below are not environment variables: Lambda uses the defaults, the local
    # runner, the tests and the bench shorten them.
    upstream_timeout_seconds: float = 10.0
    max_attempts: int = 4
    backoff_base_seconds: float = 0.25
    backoff_cap_seconds: float = 8.0
    # A message still failing at this receive count goes to the dead-letter queue with the
    # last error as its reason (AWS's own redrive policy should sit above it as a backstop).
    poison_receive_count: int = 5
    # An ingest claim on a messageId is held this long before another request may take it
    # over (the ingest function's timeout is at most API Gateway's 29 s).
    accept_hold_seconds: float = 60.0
    # Clock skew allowed for a Segment receivedAt/timestamp in the future.
    future_skew_seconds: float = 300.0
    # Budget when there is no Lambda context telling the remaining time (local runner).
    default_budget_seconds: float = 30.0
    # Kept free at the end of an invocation for dead-lettering and the response.
    deadline_margin_seconds: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BridgeSettings:
        """Read the documented variables; blank values count as unset."""

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        ttl = _seconds(get("SECRETS_TTL_SECONDS"), "SECRETS_TTL_SECONDS",
                       DEFAULT_SECRETS_TTL_SECONDS)
        window = _seconds(get("BRIDGE_ACCEPTANCE_WINDOW_SECONDS"),
                          "BRIDGE_ACCEPTANCE_WINDOW_SECONDS", DEFAULT_ACCEPTANCE_WINDOW_SECONDS)
        if window <= 0:
            raise SettingsError("BRIDGE_ACCEPTANCE_WINDOW_SECONDS must be positive")
        mapping = get("BRIDGE_MAPPING")
        return cls(
            queue_url=get("QUEUE_URL"),
            dead_letter_queue_url=get("DEAD_LETTER_QUEUE_URL"),
            segment_shared_secret_arn=get("SEGMENT_SHARED_SECRET_ARN"),
            userflow_webhook_secret_arn=get("USERFLOW_WEBHOOK_SECRET_ARN"),
            userflow_api_key_arn=get("USERFLOW_API_KEY_ARN"),
            segment_write_key_arn=get("SEGMENT_WRITE_KEY_ARN"),
            userflow_api_url=(get("USERFLOW_API_URL") or DEFAULT_USERFLOW_API_URL).rstrip("/"),
            segment_tracking_url=(
                get("SEGMENT_TRACKING_URL") or DEFAULT_SEGMENT_TRACKING_URL).rstrip("/"),
            mapping_path=Path(mapping) if mapping else None,
            secrets_ttl_seconds=ttl,
            ledger_table=get("BRIDGE_LEDGER_TABLE"),
            segment_batching=_boolean(get("BRIDGE_SEGMENT_BATCHING"),
                                      "BRIDGE_SEGMENT_BATCHING"),
            acceptance_window_seconds=window,
        )

    def resolved_mapping_path(self) -> Path:
        return self.mapping_path or default_mapping_path()


def _seconds(text: str | None, name: str, default: float) -> float:
    try:
        value = float(text) if text else default
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):  # also refuses NaN
        raise SettingsError(f"{name} must be a finite, non-negative number of seconds")
    return value


def _boolean(text: str | None, name: str) -> bool:
    if text is None:
        return False
    if text.lower() not in {"true", "false"}:
        raise SettingsError(f"{name} must be true or false, got {text!r}")
    return text.lower() == "true"
