"""A Pulumi mock monitor that keeps each resource registration as the engine would see it.

Shared by the mocks tests of the integration component and of whole stacks: type, logical
name, URN (as the mocks compute it), parent, custom/protect flags, raw inputs (with Pulumi's
secret markers intact), additional secret outputs, dependencies, aliases and ignored
properties (as sent).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, keeping each registration request (the stack itself aside)."""

    def __init__(self, mocks: pulumi_mocks.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[dict[str, Any]] = []

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                {
                    "type": request.type,
                    "urn": response.urn,
                    "name": request.name,
                    "parent": request.parent,
                    "custom": request.custom,
                    "protect": request.protect,
                    "inputs": json_format.MessageToDict(request.object),
                    "additional_secret_outputs": list(request.additionalSecretOutputs),
                    "dependencies": list(request.dependencies),
                    "aliases": [json_format.MessageToDict(a) for a in request.aliases],
                    "ignore_changes": list(request.ignoreChanges),
                }
            )
        return response
