"""What both handlers share in one container: settings, AWS clients, secrets, mapping, ledger,
counters."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bridge_code.aws import AwsClients, AwsTarget
from bridge_code.ledger import DynamoLedger, Ledger
from bridge_code.mapping import MappingConfig, read_mapping_file
from bridge_code.secret_store import SecretStore
from bridge_code.settings import BridgeSettings
from bridge_code.stats import BridgeStats


@dataclass
class BridgeRuntime:
    """Built once per container (Lambda) or per local bridge, then shared by its handlers."""

    settings: BridgeSettings
    aws: AwsClients
    secrets: SecretStore
    mapping: MappingConfig
    stats: BridgeStats = field(default_factory=BridgeStats)
    clock: Callable[[], float] = time.time
    # None when BRIDGE_LEDGER_TABLE is unset: Segment -> Userflow is then not configured.
    ledger: Ledger | None = None

    @classmethod
    def build(cls, settings: BridgeSettings, target: AwsTarget | None = None) -> BridgeRuntime:
        aws = AwsClients(target)
        ledger = (DynamoLedger(lambda: aws.dynamodb, settings.ledger_table)
                  if settings.ledger_table else None)
        return cls(settings=settings, aws=aws,
                   secrets=SecretStore(aws.secret_string, settings.secrets_ttl_seconds),
                   mapping=read_mapping_file(settings.resolved_mapping_path()), ledger=ledger)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> BridgeRuntime:
        return cls.build(BridgeSettings.from_env(os.environ if env is None else env))
