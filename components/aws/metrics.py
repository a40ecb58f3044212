"""The bridge's own CloudWatch metrics: one definition, emitted by the functions, read by the
dashboard.

The IaC never imports the bridge (the Lambda zip) and the bridge never imports the IaC, so
the definition crosses as data: `BridgeMetricsDefinition.settings_json()` becomes the
functions' `BRIDGE_METRICS` variable, and `bridge_code/metrics.py` emits exactly the names it
holds, as Embedded Metric Format log lines (no CloudWatch API call, no extra permission). The
dashboard builds its widgets from the same object, so a renamed metric cannot leave a widget
pointing at nothing.

Cardinality stays bounded: the only dimensions are the environment (one value per stack),
the direction (two values) and the skip reason (the bridge's fixed reason names).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

NAMESPACE = "UserflowSegment/Bridge"
ENVIRONMENT_DIMENSION = "Environment"
DIRECTION_DIMENSION = "Direction"
REASON_DIMENSION = "Reason"
# The bridge's names for its two directions (bridge_code/stats.py; a test keeps them equal).
DIRECTIONS = ("segment_to_userflow", "userflow_to_segment")
# The bridge's counter -> the metric it is published as (per environment and direction).
COUNTER_METRICS = {
    "accepted": "Accepted",
    "delivered": "Delivered",
    "dead_lettered": "DeadLettered",
    "ambiguous": "Ambiguous",
}
# Skipped events, per environment, direction and reason.
SKIPPED_METRIC = "Skipped"
# Milliseconds from enqueue (SQS SentTimestamp) to settled by delivery, one value per event.
LATENCY_METRIC = "DeliveryLatency"
# The variable that carries the definition to both functions.
SETTINGS_VARIABLE = "BRIDGE_METRICS"


@dataclass(frozen=True)
class BridgeMetricsDefinition:
    """Where the bridge's metrics live and what they are called, for one environment."""

    environment: str
    """The value of the environment dimension (the stack's environment)."""
    namespace: str = NAMESPACE
    directions: tuple[str, ...] = DIRECTIONS
    counters: dict[str, str] = field(default_factory=lambda: dict(COUNTER_METRICS))
    """Bridge counter -> metric name."""
    skipped: str = SKIPPED_METRIC
    latency: str = LATENCY_METRIC

    def settings(self) -> dict[str, object]:
        """The definition as the bridge reads it (bridge_code/metrics.py)."""
        return {
            "namespace": self.namespace,
            "environment": {"dimension": ENVIRONMENT_DIMENSION, "value": self.environment},
            "direction_dimension": DIRECTION_DIMENSION,
            "reason_dimension": REASON_DIMENSION,
            "directions": list(self.directions),
            "counters": dict(self.counters),
            "skipped": self.skipped,
            "latency_ms": self.latency,
        }

    def settings_json(self) -> str:
        """`settings()` serialized, stable byte for byte (a Lambda variable: no diff churn)."""
        return json.dumps(self.settings(), sort_keys=True, separators=(",", ":"))

    def dimensions(self, direction: str, reason: str | None = None) -> list[str]:
        """A metric's dimensions as a dashboard metric array lists them (name, value, ...)."""
        pairs = [ENVIRONMENT_DIMENSION, self.environment, DIRECTION_DIMENSION, direction]
        return pairs if reason is None else [*pairs, REASON_DIMENSION, reason]
