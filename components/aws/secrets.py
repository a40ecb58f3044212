"""The environment's Secrets Manager secrets: one value each, so each function's role can be
granted exactly the ones it reads.

The values arrive in two steps because of a dependency cycle between components (not between
resources): the functions need the secrets' ARNs, the API needs the ingest function, the
Segment/Userflow resources need the API's URL, and three of the four values come from those
resources. So the secrets are created first and `store_values` adds their versions later.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.project import component_type


@dataclass(frozen=True)
class BridgeSecretsArgs:
    """What the secrets component needs."""

    name_prefix: str
    """Prefix of every physical name (carries the environment)."""
    recovery_window_days: int
    """0 deletes at once (a stack can be rebuilt with the same names); 7-30 keeps a grace."""


@dataclass(frozen=True)
class BridgeSecretValues:
    """The four values, each a Pulumi secret."""

    userflow_api_key: pulumi.Input[str]
    segment_write_key: pulumi.Input[str]
    segment_shared_secret: pulumi.Input[str]
    userflow_webhook_secret: pulumi.Input[str]


# Logical name suffix -> what the secret holds (physical names add the environment prefix).
SECRET_PURPOSES = {
    "userflow-api-key": "Userflow API key (delivery writes to Userflow)",
    "segment-write-key": "write key of the Segment source for Userflow events (delivery)",
    "segment-shared-secret": "Segment Webhooks destination shared secret(s) (ingest verifies)",
    "userflow-webhook-secret": "Userflow webhook subscription secret(s) (ingest verifies)",
}


class BridgeSecrets(pulumi.ComponentResource):
    """Four Secrets Manager secrets of one environment."""

    userflow_api_key_arn: pulumi.Output[str]
    segment_write_key_arn: pulumi.Output[str]
    segment_shared_secret_arn: pulumi.Output[str]
    userflow_webhook_secret_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: BridgeSecretsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(component_type("BridgeSecrets"), name, None, opts)
        self._name = name
        self._secrets: dict[str, aws.secretsmanager.Secret] = {
            purpose: aws.secretsmanager.Secret(
                f"{name}-{purpose}",
                name=f"{args.name_prefix}/{purpose}",
                description=description,
                recovery_window_in_days=args.recovery_window_days,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for purpose, description in SECRET_PURPOSES.items()
        }
        self.userflow_api_key_arn = self._secrets["userflow-api-key"].arn
        self.segment_write_key_arn = self._secrets["segment-write-key"].arn
        self.segment_shared_secret_arn = self._secrets["segment-shared-secret"].arn
        self.userflow_webhook_secret_arn = self._secrets["userflow-webhook-secret"].arn

    def store_values(self, values: BridgeSecretValues) -> None:
        """Store each value as the secret's current version (always as a Pulumi secret, so
        state and previews show it encrypted even if an input forgot to be marked)."""
        by_purpose: dict[str, pulumi.Input[str]] = {
            "userflow-api-key": values.userflow_api_key,
            "segment-write-key": values.segment_write_key,
            "segment-shared-secret": values.segment_shared_secret,
            "userflow-webhook-secret": values.userflow_webhook_secret,
        }
        for purpose, value in by_purpose.items():
            aws.secretsmanager.SecretVersion(
                f"{self._name}-{purpose}",
                secret_id=self._secrets[purpose].id,
                secret_string=pulumi.Output.secret(value),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs(
            {
                "userflow_api_key_arn": self.userflow_api_key_arn,
                "segment_write_key_arn": self.segment_write_key_arn,
                "segment_shared_secret_arn": self.segment_shared_secret_arn,
                "userflow_webhook_secret_arn": self.userflow_webhook_secret_arn,
            }
        )
