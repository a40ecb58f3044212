"""How the ledger table is billed: on demand (the default) or provisioned with auto scaling.

The keys (`ledgerCapacity`, `ledgerMin/MaxWriteCapacity`, `ledgerMin/MaxReadCapacity`,
`ledgerTargetUtilization`) are read here, once, and checked against what DynamoDB and
Application Auto Scaling accept; `components/aws/ledger.py` builds the table and its scaler
from the result and `bench/cost_model.py` prices it. The capacity keys are read whatever the
mode and only used when provisioned, so going back to on demand is one key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from components.config_keys import Reader

LedgerMode = Literal["onDemand", "provisioned"]
LEDGER_MODES: tuple[LedgerMode, ...] = ("onDemand", "provisioned")
# A table's provisioned read or write capacity: at least 1 unit, at most the account's
# per-table quota (40,000 by default: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html).
MIN_CAPACITY_UNITS = 1
MAX_CAPACITY_UNITS = 40_000
# DynamoDB auto scaling's target utilisation, percent, as Application Auto Scaling accepts it
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/AutoScaling.html).
MIN_TARGET_UTILIZATION = 20
MAX_TARGET_UTILIZATION = 90


@dataclass(frozen=True)
class LedgerCapacity:
    """The ledger table's billing mode and, when provisioned, its scaler's bounds (the
    defaults are Pulumi.yaml's)."""

    mode: LedgerMode
    min_write: int
    max_write: int
    min_read: int
    max_read: int
    target_utilization: int
    """Percent of the provisioned capacity the scaler aims to use."""

    @property
    def provisioned(self) -> bool:
        return self.mode == "provisioned"


def read_ledger_capacity(read: Reader) -> LedgerCapacity:
    """The ledger keys, each within what AWS accepts, each minimum at most its maximum."""
    mode = read.choice("ledgerCapacity", LEDGER_MODES)
    min_write, max_write = _bounds(read, "Write")
    min_read, max_read = _bounds(read, "Read")
    target = read.integer("ledgerTargetUtilization", MIN_TARGET_UTILIZATION,
                          MAX_TARGET_UTILIZATION)
    return LedgerCapacity(mode=mode, min_write=min_write, max_write=max_write,
                          min_read=min_read, max_read=max_read, target_utilization=target)


def _bounds(read: Reader, kind: str) -> tuple[int, int]:
    low_key, high_key = f"ledgerMin{kind}Capacity", f"ledgerMax{kind}Capacity"
    low = read.integer(low_key, MIN_CAPACITY_UNITS, MAX_CAPACITY_UNITS)
    high = read.integer(high_key, MIN_CAPACITY_UNITS, MAX_CAPACITY_UNITS)
    if low > high and not read.failed(low_key, high_key):
        read.fail(low_key, f"must be at most {high_key}")
    return low, high
