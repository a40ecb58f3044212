"""The bridge's settings, read once from the environment variables in docs/ARCHITECTURE.md."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bridge_code.mapping import default_mapping_path

DEFAULT_USERFLOW_API_URL = "https://api.userflow.com"
DEFAULT_SEGMENT_TRACKING_URL = "https://api.segment.io"
DEFAULT_SECRETS_TTL_SECONDS = 300.0


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
    # The knobs below are not environment variables: Lambda uses the defaults, the local
    # runner, the tests and the bench shorten them.
    upstream_timeout_seconds: float = 10.0
    max_attempts: int = 4
    backoff_base_seconds: float = 0.25
    backoff_cap_seconds: float = 8.0
    # A message still failing at this receive count goes to the dead-letter queue with the
    # last error as its reason (AWS's own redrive policy should sit above it as a backstop).
    poison_receive_count: int = 5
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

        ttl_text = get("SECRETS_TTL_SECONDS")
        try:
            ttl = float(ttl_text) if ttl_text else DEFAULT_SECRETS_TTL_SECONDS
        except ValueError:
            raise SettingsError(
                f"SECRETS_TTL_SECONDS must be a number of seconds, got {ttl_text!r}") from None
        if ttl < 0:
            raise SettingsError("SECRETS_TTL_SECONDS must not be negative")
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
        )

    def resolved_mapping_path(self) -> Path:
        return self.mapping_path or default_mapping_path()
