"""SegmentWebhookDestination: pure mapping/validation, then the provider's whole lifecycle
against the Segment emulator (every call spec-validated there)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import requests

from components.provider import unknown
from components.segment_api import HTTP_API_SOURCE_METADATA_ID
from components.segment_destination import (
    SegmentWebhookDestinationArgs,
    SegmentWebhookDestinationProvider,
    destination_inputs,
    with_destination_defaults,
)
from components.segment_destination_payloads import (
    desired_view,
    fql_trigger,
    observed_shared_secret,
    send_settings,
    subscription_settings_patch,
    validate_destination_inputs,
)
from tests.providers.conftest import (
    FAST_RETRIES,
    SEGMENT_TOKEN,
    BridgeStandIn,
    Sandbox,
    configured,
    segment_api,
)

BRIDGE = "https://bridge.example.com/prod"


def inputs_of(**overrides: Any) -> dict[str, Any]:
    args = SegmentWebhookDestinationArgs(source_id="src1", bridge_url=BRIDGE)
    return with_destination_defaults({**destination_inputs(args), **overrides})


# -- pure ----------------------------------------------------------------------------------------


def test_trigger_is_canonical_fql() -> None:
    assert fql_trigger(["identify", "track", "group"]) == (
        'type = "identify" or type = "track" or type = "group"'
    )
    assert fql_trigger(["group", "identify", "group"]) == 'type = "identify" or type = "group"'


def test_send_settings_follow_batching() -> None:
    assert send_settings(inputs_of(batching=False)) == {
        "url": BRIDGE + "/segment",
        "method": "POST",
        "enable_batching": False,
        "data": {"@path": "$."},
    }
    assert send_settings(inputs_of(batching=True, batch_size=50.0))["batch_size"] == 50


def test_a_managed_setting_no_longer_wanted_is_sent_as_null() -> None:
    assert subscription_settings_patch(inputs_of(batching=False))["batch_size"] is None
    assert subscription_settings_patch(inputs_of(batching=True))["batch_size"] == 100


def test_a_masked_secret_is_not_drift() -> None:
    assert observed_shared_secret({"settings": {"sharedSecret": "••••••"}}, "s3cret") == "s3cret"
    assert observed_shared_secret({"settings": {"sharedSecret": "changed"}}, "s3cret") == "changed"
    assert observed_shared_secret({"settings": {}}, "s3cret") is None


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"event_types": ["identify", "pageview"]}, "event_types", "unknown event type"),
        ({"event_types": []}, "event_types", "must list"),
        ({"bridge_url": "http://bridge.example.com"}, "bridge_url", "plain http"),
        ({"batch_size": 0}, "batch_size", "from 1 to 4000"),
        ({"batch_size": 4001}, "batch_size", "from 1 to 4000"),
        ({"batch_size": 2.5}, "batch_size", "whole number"),
        ({"shared_secret_rotation": -1}, "shared_secret_rotation", ">= 0"),
        ({"source_id": ""}, "source_id", "app's Segment source"),
    ],
)
def test_validation_says_what_to_fix(overrides: dict[str, Any], field: str, words: str) -> None:
    failures = dict(validate_destination_inputs(inputs_of(**overrides)))
    assert list(failures) == [field]
    assert words in failures[field]


def test_local_bridge_over_http_and_unknown_values_pass() -> None:
    assert validate_destination_inputs(inputs_of(bridge_url="http://127.0.0.1:8787")) == []
    assert validate_destination_inputs(inputs_of(bridge_url=unknown(), source_id=unknown())) == []


def olds_for(inputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs as a create would leave them for these inputs."""
    view = desired_view(inputs)
    return {**view, "destination_id": "d1", "subscription_id": "s1", "shared_secret": "x",
            "next_shared_secret": "y"}


@pytest.mark.parametrize(
    ("overrides", "changes", "replaces"),
    [
        ({}, False, []),
        ({"event_types": ["group", "track", "identify"]}, False, []),  # order is not drift
        ({"event_types": ["track"]}, True, []),
        ({"batching": False}, True, []),
        ({"bridge_url": "https://other.example.com"}, True, []),
        ({"bridge_url": unknown()}, True, []),
        ({"shared_secret_rotation": 1}, True, []),
        ({"name": "renamed"}, True, []),
        ({"source_id": "src2"}, True, ["source_id"]),
        ({"source_id": unknown()}, True, ["source_id"]),
    ],
)
def test_diff(overrides: dict[str, Any], changes: bool, replaces: list[str]) -> None:
    olds = olds_for(inputs_of())
    result = SegmentWebhookDestinationProvider().diff("d1", olds, inputs_of(**overrides))
    assert result.changes is changes
    assert result.replaces == replaces


def test_replacing_in_place_deletes_first_but_moving_source_does_not() -> None:
    olds = olds_for(inputs_of())
    provider = SegmentWebhookDestinationProvider()
    moved = provider.diff("d1", olds, inputs_of(source_id="src2"))
    assert moved.delete_before_replace is False
    # Same source and name: create would adopt the old destination, so it must go first.
    in_place = provider.diff("d1", olds, inputs_of(action_id="another-action"))
    assert in_place.replaces == ["action_id"] and in_place.delete_before_replace is True


def test_diff_wants_an_update_when_refresh_lost_the_subscription_or_secret() -> None:
    provider = SegmentWebhookDestinationProvider()
    for missing in ("subscription_id", "shared_secret"):
        olds = {**olds_for(inputs_of()), missing: None}
        assert provider.diff("d1", olds, inputs_of()).changes is True


# -- lifecycle against the emulator --------------------------------------------------------------


@pytest.fixture
def app_source(segment: Sandbox) -> str:
    body = {"slug": "app-test", "enabled": True, "metadataId": HTTP_API_SOURCE_METADATA_ID}
    source_id: str = segment_api(segment, "POST", "/sources", body)["data"]["source"]["id"]
    return source_id


def provider_for(segment: Sandbox) -> SegmentWebhookDestinationProvider:
    return configured(
        SegmentWebhookDestinationProvider(FAST_RETRIES),
        segmentApiUrl=segment.url,
        segmentToken=SEGMENT_TOKEN,
    )


def checked(provider: SegmentWebhookDestinationProvider, **fields: Any) -> dict[str, Any]:
    args = SegmentWebhookDestinationArgs(**fields)
    result = provider.check({}, destination_inputs(args))
    assert result.failures == []
    return result.inputs


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def test_lifecycle(segment: Sandbox, app_source: str) -> None:
    provider = provider_for(segment)
    inputs = checked(
        provider, source_id=app_source, bridge_url="http://127.0.0.1:8787", batching=True
    )

    # create: destination + Send subscription, shared secret generated and stored in Segment
    created = provider.create(inputs)
    outs = created.outs
    assert outs is not None
    state = segment.state()
    destination = only(state["destinations"])
    subscription = only(state["subscriptions"])
    assert destination["id"] == created.id == outs["destination_id"]
    assert destination["sourceId"] == app_source and destination["enabled"] is True
    assert destination["settings"] == {"sharedSecret": outs["shared_secret"]}
    assert len(outs["shared_secret"]) == 64
    assert subscription["id"] == outs["subscription_id"]
    assert subscription["actionId"] == "nFPnRozhz1mh4Gbx4MLvT5"
    assert subscription["trigger"] == 'type = "identify" or type = "track" or type = "group"'
    assert subscription["settings"]["url"] == "http://127.0.0.1:8787/segment"
    assert subscription["settings"]["enable_batching"] is True
    assert subscription["settings"]["batch_size"] == 100

    # a second `up`: nothing to do, and no API call
    calls = segment.api_calls()
    again = provider.check(
        outs,
        destination_inputs(
            SegmentWebhookDestinationArgs(
                source_id=app_source, bridge_url="http://127.0.0.1:8787", batching=True
            )
        ),
    )
    assert provider.diff(created.id, outs, again.inputs).changes is False
    assert segment.api_calls() == calls

    # refresh right after create: the masked secret is not drift
    read = provider.read(created.id, outs)
    assert read.outs == outs

    # an unmanaged setting added in the Segment app must survive our updates
    segment_api(
        segment,
        "PATCH",
        f"/destinations/{created.id}/subscriptions/{outs['subscription_id']}",
        {"input": {"settings": {"headers": {"X-Team": "growth"}}}},
    )

    # update: batching off (batch_size goes away), fewer event types; secret unchanged
    new_inputs = {**inputs, "batching": False, "event_types": ["track"]}
    assert provider.diff(created.id, outs, new_inputs).replaces == []
    updated = provider.update(created.id, outs, new_inputs)
    assert updated.outs is not None
    subscription = only(segment.state()["subscriptions"])
    assert subscription["trigger"] == 'type = "track"'
    assert "batch_size" not in subscription["settings"]
    assert subscription["settings"]["enable_batching"] is False
    assert subscription["settings"]["headers"] == {"X-Team": "growth"}
    assert updated.outs["shared_secret"] == outs["shared_secret"]
    assert provider.diff(created.id, updated.outs, new_inputs).changes is False

    # rotate (no overlap to wait for here; tests/providers/test_rotation.py has the overlap):
    # a new secret, and Segment holds it
    rotated_inputs = {**new_inputs, "shared_secret_rotation": 1, "rotation_overlap_seconds": 0}
    rotated = provider.update(created.id, updated.outs, rotated_inputs)
    assert rotated.outs is not None
    assert rotated.outs["shared_secret"] != outs["shared_secret"]
    destination = only(segment.state()["destinations"])
    assert destination["settings"]["sharedSecret"] == rotated.outs["shared_secret"]

    # refresh after an out-of-band change of the trigger: drift, and update puts it back
    segment_api(
        segment,
        "PATCH",
        f"/destinations/{created.id}/subscriptions/{outs['subscription_id']}",
        {"input": {"trigger": 'type = "page"'}},
    )
    drifted = provider.read(created.id, rotated.outs)
    assert drifted.outs is not None and drifted.outs["trigger"] == 'type = "page"'
    assert provider.diff(created.id, drifted.outs, rotated_inputs).changes is True
    provider.update(created.id, drifted.outs, rotated_inputs)
    assert only(segment.state()["subscriptions"])["trigger"] == 'type = "track"'

    # out-of-band deletion of the subscription: refresh notices, update recreates exactly one
    segment_api(
        segment, "DELETE", f"/destinations/{created.id}/subscriptions/{outs['subscription_id']}"
    )
    lost = provider.read(created.id, rotated.outs)
    assert lost.outs is not None and lost.outs["subscription_id"] is None
    assert provider.diff(created.id, lost.outs, rotated_inputs).changes is True
    healed = provider.update(created.id, lost.outs, rotated_inputs)
    assert healed.outs is not None
    assert only(segment.state()["subscriptions"])["id"] == healed.outs["subscription_id"]

    # out-of-band deletion of the destination: gone
    segment_api(segment, "DELETE", f"/destinations/{created.id}")
    gone = provider.read(created.id, healed.outs)
    assert gone.id == "" and gone.outs == {}

    # destroy leaves nothing (and a second delete is fine)
    recreated = provider.create(inputs)
    provider.delete(recreated.id, recreated.outs or {})
    state = segment.state()
    assert state["destinations"] == [] and state["subscriptions"] == []
    provider.delete(recreated.id, recreated.outs or {})
    assert state["spec_violations"] == []


def test_interrupted_create_then_retry_leaves_exactly_one_of_each(
    segment: Sandbox, app_source: str
) -> None:
    provider = provider_for(segment)
    inputs = checked(provider, source_id=app_source, bridge_url="https://b.example.com")
    # The destination is created, then creating its subscription keeps failing: `up` dies.
    segment.fault(
        method="POST",
        path_prefix="/destinations/",
        status=503,
        count=FAST_RETRIES.max_attempts,
    )
    with pytest.raises(Exception, match="create destination subscription"):
        provider.create(inputs)
    assert len(segment.state()["destinations"]) == 1

    retried = provider.create(inputs)
    assert retried.outs is not None
    state = segment.state()
    assert only(state["destinations"])["id"] == retried.id
    assert only(state["subscriptions"])["id"] == retried.outs["subscription_id"]
    # adopted, so its secret was reset to the one the stack now hands the bridge
    assert only(state["destinations"])["settings"]["sharedSecret"] == retried.outs["shared_secret"]

    # and a third create (another interrupted up after both existed) still adds nothing
    provider.create(inputs)
    state = segment.state()
    assert len(state["destinations"]) == 1 and len(state["subscriptions"]) == 1


def test_429_storm_during_update(segment: Sandbox, app_source: str) -> None:
    provider = provider_for(segment)
    inputs = checked(provider, source_id=app_source, bridge_url="https://b.example.com")
    created = provider.create(inputs)
    segment.fault(
        method="PATCH", path_prefix="/destinations/", status=429, count=5, retry_after=0.01
    )
    updated = provider.update(created.id, created.outs or {}, {**inputs, "name": "renamed"})
    assert updated.outs is not None and updated.outs["name"] == "renamed"
    assert only(segment.state()["destinations"])["name"] == "renamed"
    patches = [r["status"] for r in segment.requests() if r["method"] == "PATCH"]
    assert patches.count(429) == 5 and patches[-1] == 200


def test_destination_on_a_missing_source_fails_with_the_api_body(segment: Sandbox) -> None:
    provider = provider_for(segment)
    inputs = checked(provider, source_id="nosuchsource", bridge_url="https://b.example.com")
    with pytest.raises(Exception) as caught:
        provider.create(inputs)
    message = str(caught.value)
    assert "create destination" in message and "422" in message and "nosuchsource" in message
    assert SEGMENT_TOKEN not in message


def test_segment_delivers_matching_events_to_the_bridge_signed_with_the_output_secret(
    segment: Sandbox, bridge: BridgeStandIn
) -> None:
    body = {"slug": "app-live", "enabled": True, "metadataId": HTTP_API_SOURCE_METADATA_ID}
    app = segment_api(segment, "POST", "/sources", body)["data"]["source"]
    provider = provider_for(segment)
    inputs = checked(provider, source_id=app["id"], bridge_url=bridge.url, event_types=["track"],
                     batching=False)
    created = provider.create(inputs)
    assert created.outs is not None
    secret = created.outs["shared_secret"]

    auth = (app["writeKeys"][0], "")
    for event in (
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}},  # not in the trigger
        {"type": "track", "userId": "u1", "event": "Report Built"},
    ):
        kind = event.pop("type")
        response = requests.post(f"{segment.url}/v1/{kind}", json=event, auth=auth, timeout=5)
        assert response.status_code == 200

    [delivery] = bridge.wait_for(1)
    assert delivery.path == "/segment"
    expected = hmac.new(secret.encode(), delivery.body, hashlib.sha1).hexdigest()
    assert delivery.headers["X-Signature"] == expected
    assert json.loads(delivery.body)["event"] == "Report Built"
    time.sleep(0.3)  # the identify had its chance: still one delivery
    assert len(bridge.deliveries) == 1
