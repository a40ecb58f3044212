"""The cost model counts what CloudWatch Logs bills for the functions as deployed."""

from __future__ import annotations

import json

from bench.cost_model import (
    LOG_EVENT_OVERHEAD_BYTES,
    PLATFORM_RECORDS,
    platform_log_bytes,
)
from components.aws.functions import SYSTEM_LOG_LEVEL


def test_lambdas_own_records_are_counted_exactly_when_its_level_lets_them_through() -> None:
    records = [json.loads(record) for record in PLATFORM_RECORDS]
    assert [record["type"] for record in records] == ["platform.start", "platform.report"]
    both = sum(len(record) + LOG_EVENT_OVERHEAD_BYTES for record in PLATFORM_RECORDS)
    assert platform_log_bytes("INFO") == platform_log_bytes("DEBUG") == both
    assert platform_log_bytes("WARN") == 0
    # As deployed (components/aws/functions.py): the records are left out, and not counted.
    assert SYSTEM_LOG_LEVEL == "WARN" and platform_log_bytes() == 0

