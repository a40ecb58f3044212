"""SegmentUserflowIntegration under Pulumi mocks: which resources register, with what type,
parent and secret outputs, and that every dynamic resource's pickled provider (as registered)
holds no token even though the tokens are in the stack config."""

from __future__ import annotations

import base64
from typing import Any

import pulumi
import pytest
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from components.integration import IntegrationArgs, SegmentUserflowIntegration
from components.segment_destination import SegmentWebhookDestinationProvider
from components.segment_source import SegmentSourceLookupProvider, SegmentSourceProvider
from components.userflow_webhook import DEFAULT_TOPICS, UserflowWebhookSubscriptionProvider
from tests.providers.conftest import unpickle
from tests.recording_monitor import RecordingMonitor

TOKEN = "seg-token-in-config-123"
API_KEY = "ak_in_config_456"
SOURCE = "pulumi-python:dynamic/segment:Source"
LOOKUP = "pulumi-python:dynamic/segment:SourceLookup"
DESTINATION = "pulumi-python:dynamic/segment:WebhookDestination"
WEBHOOK = "pulumi-python:dynamic/userflow:WebhookSubscription"
COMPONENT = "userflow-segment:index:Integration"


class ProviderOutputs(pulumi_mocks.Mocks):
    """Answers like the providers would: inputs back, plus ids and generated secrets."""

    def new_resource(
        self, args: pulumi_mocks.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        outputs = {k: v for k, v in args.inputs.items() if k != "__provider"}
        ident = f"{args.name}-id"
        if args.typ in (SOURCE, LOOKUP):
            outputs.update(source_id=ident, write_key=f"wk-{args.name}")
        elif args.typ == DESTINATION:
            outputs.update(destination_id=ident, subscription_id="sub-1", shared_secret="ss")
        elif args.typ == WEBHOOK:
            outputs.update(subscription_id=ident, secret="whsec")
        return ident, outputs

    def call(self, args: pulumi_mocks.MockCallArgs) -> Any:
        raise AssertionError(f"unexpected invoke {args.token}")


@pytest.fixture
def monitor() -> RecordingMonitor:
    mocks = ProviderOutputs()
    recording = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(
        mocks, project="userflow-segment", stack="staging", preview=False, monitor=recording
    )
    pulumi.runtime.set_all_config(
        {"userflow-segment:segmentToken": TOKEN, "userflow-segment:userflowApiKey": API_KEY},
        ["userflow-segment:segmentToken", "userflow-segment:userflowApiKey"],
    )
    return recording


def args(**overrides: Any) -> IntegrationArgs:
    base: dict[str, Any] = {
        "environment": "staging",
        "bridge_url": "https://bridge.example.com",
        "app_source_id": None,
        "app_source_slug": None,
        "create_app_source": False,
        "event_types": ["identify", "track", "group"],
        "batching": True,
        "batch_size": 50,
        "shared_secret_rotation": 0,
        "userflow_topics": [],
    }
    return IntegrationArgs(**{**base, **overrides})


def by_type(monitor: RecordingMonitor, typ: str) -> list[dict[str, Any]]:
    return [r for r in monitor.registrations if r["type"] == typ]


def plain(value: Any) -> Any:
    """A registered input without its secret wrapper."""
    if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
        return value["value"]
    return value


def outputs_of(integration: SegmentUserflowIntegration) -> pulumi.Output[list[Any]]:
    return pulumi.Output.all(
        integration.app_source_id,
        integration.userflow_source_slug,
        integration.destination_id,
        integration.userflow_subscription_id,
        integration.write_key.is_secret(),
        integration.shared_secret.is_secret(),
        integration.userflow_webhook_secret.is_secret(),
    )


@pulumi.runtime.test  # type: ignore[untyped-decorator]
def test_sandbox_shape_registers_everything_under_the_component(
    monitor: RecordingMonitor,
) -> pulumi.Output[Any]:
    integration = SegmentUserflowIntegration("integration", args(create_app_source=True))

    def check(values: list[Any]) -> None:
        app_id, slug, destination_id, webhook_id, *secret_flags = values
        assert app_id == "integration-app-source-id"
        assert slug == "userflow-staging"
        assert destination_id == "integration-bridge-destination-id"
        assert webhook_id == "integration-userflow-webhook-id"
        assert secret_flags == [True, True, True]

        assert len(by_type(monitor, COMPONENT)) == 1
        sources = by_type(monitor, SOURCE)
        assert sorted(plain(s["inputs"]["slug"]) for s in sources) == [
            "app-staging",
            "userflow-staging",
        ]
        [destination] = by_type(monitor, DESTINATION)
        [webhook] = by_type(monitor, WEBHOOK)
        children = [*sources, destination, webhook]
        [parent] = {c["parent"] for c in children}
        assert parent.endswith(f"{COMPONENT}::integration")
        assert all(s["additional_secret_outputs"] == ["write_key", "previous_write_key"]
                   for s in sources)
        assert destination["additional_secret_outputs"] == [
            "shared_secret", "next_shared_secret", "previous_shared_secret",
            "accepted_shared_secrets"]
        assert webhook["additional_secret_outputs"] == [
            "secret", "next_secret", "previous_secret", "accepted_secrets"]
        assert plain(destination["inputs"]["source_id"]) == "integration-app-source-id"
        assert plain(destination["inputs"]["batch_size"]) == 50
        assert plain(destination["inputs"]["name"]) == "Userflow bridge (staging)"
        assert plain(webhook["inputs"]["topics"]) == list(DEFAULT_TOPICS)
        assert by_type(monitor, LOOKUP) == []

    return outputs_of(integration).apply(check)


@pulumi.runtime.test  # type: ignore[untyped-decorator]
def test_registered_providers_unpickle_and_hold_no_token(
    monitor: RecordingMonitor,
) -> pulumi.Output[Any]:
    integration = SegmentUserflowIntegration("integration", args(app_source_slug="app-web"))

    def check(_: Any) -> None:
        expected = {
            SOURCE: SegmentSourceProvider,
            LOOKUP: SegmentSourceLookupProvider,
            DESTINATION: SegmentWebhookDestinationProvider,
            WEBHOOK: UserflowWebhookSubscriptionProvider,
        }
        dynamic = [r for r in monitor.registrations if r["type"] in expected]
        assert sorted(r["type"] for r in dynamic) == sorted(expected)
        for registration in dynamic:
            raw = base64.b64decode(plain(registration["inputs"]["__provider"]))
            assert TOKEN.encode() not in raw and API_KEY.encode() not in raw
            provider = unpickle(raw)
            assert type(provider) is expected[registration["type"]]
            # and no token among the inputs, which the state stores in plaintext
            assert TOKEN not in str(registration["inputs"])
            assert API_KEY not in str(registration["inputs"])
        [lookup] = by_type(monitor, LOOKUP)
        assert plain(lookup["inputs"]["slug"]) == "app-web"

    return outputs_of(integration).apply(check)


@pulumi.runtime.test  # type: ignore[untyped-decorator]
def test_a_given_app_source_id_needs_neither_lookup_nor_app_source(
    monitor: RecordingMonitor,
) -> pulumi.Output[Any]:
    integration = SegmentUserflowIntegration("integration", args(app_source_id="src-app"))

    def check(values: list[Any]) -> None:
        assert values[0] == "src-app"
        assert by_type(monitor, LOOKUP) == []
        assert [plain(s["inputs"]["slug"]) for s in by_type(monitor, SOURCE)] == [
            "userflow-staging"
        ]

    return outputs_of(integration).apply(check)


def test_no_app_source_at_all_is_refused(monitor: RecordingMonitor) -> None:
    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> None:
        SegmentUserflowIntegration("integration", args())

    with pytest.raises(ValueError, match="app_source_id or app_source_slug"):
        program()
