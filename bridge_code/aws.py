"""boto3 clients for SQS, Secrets Manager and DynamoDB, created once per container on first use.

boto3 is imported lazily: it comes with the Lambda runtime but costs about a hundred
milliseconds to import, which a /health call or an unsigned request never needs to pay.
Locally, `endpoint_url` points the clients at moto; on Lambda boto3 reads AWS_ENDPOINT_URL
itself when set, and otherwise talks to AWS.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AwsTarget:
    """Where the AWS clients point; all None on Lambda (the runtime's defaults)."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None


class AwsClients:
    """Lazily built, thread-safe SQS, Secrets Manager and DynamoDB clients."""

    def __init__(self, target: AwsTarget | None = None) -> None:
        self._target = target or AwsTarget()
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                import boto3  # type: ignore[import-untyped]
                from botocore.config import Config  # type: ignore[import-untyped]

                session = boto3.session.Session(
                    aws_access_key_id=self._target.access_key_id,
                    aws_secret_access_key=self._target.secret_access_key,
                    region_name=self._target.region,
                )
                # Read timeout above SQS's 20 s long poll; botocore's standard retry mode
                # absorbs AWS's own throttling.
                config = Config(connect_timeout=3, read_timeout=25,
                                retries={"mode": "standard", "max_attempts": 3},
                                max_pool_connections=20)
                self._clients[service] = session.client(
                    service, endpoint_url=self._target.endpoint_url, config=config)
            return self._clients[service]

    @property
    def sqs(self) -> Any:
        return self._client("sqs")

    @property
    def secretsmanager(self) -> Any:
        return self._client("secretsmanager")

    @property
    def dynamodb(self) -> Any:
        return self._client("dynamodb")

    def secret_string(self, secret_id: str) -> str:
        response = self.secretsmanager.get_secret_value(SecretId=secret_id)
        return str(response["SecretString"])
