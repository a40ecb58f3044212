"""Rotation with an overlap (components/rotation.py), step by step against the emulators, on a
clock the test moves: what Segment or Userflow holds and what the bridge is told to accept
after each `up`, and that a step never runs before its overlap is over."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from components import rotation, segment_destination, segment_source, userflow_webhook
from components.config import parse_stack
from components.rotation import DEFAULT_OVERLAP_SECONDS, accepted
from components.segment_destination import (
    SegmentWebhookDestinationArgs,
    SegmentWebhookDestinationProvider,
    destination_inputs,
)
from components.segment_source import SegmentSourceArgs, SegmentSourceProvider, source_inputs
from components.userflow_webhook import (
    UserflowWebhookSubscriptionArgs,
    UserflowWebhookSubscriptionProvider,
    webhook_inputs,
)
from tests.providers.conftest import (
    FAST_RETRIES,
    SEGMENT_TOKEN,
    USERFLOW_KEY,
    Sandbox,
    configured,
    segment_api,
)

OVERLAP = 600
T0 = 1_900_000_000.0
BRIDGE = "https://bridge.example.com"
ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """The providers' wall clock, moved by the test."""

    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock()
    for module in (segment_destination, segment_source, userflow_webhook):
        monkeypatch.setattr(module, "now", fake)
    yield fake


def split(value: str | None) -> list[str]:
    return value.split(rotation.SEPARATOR) if value else []


# -- pure ----------------------------------------------------------------------------------------


def test_accepted_keeps_order_and_drops_blanks_and_repeats() -> None:
    assert accepted("new", None, "old", "", "new") == "new,old"
    assert accepted(None, "") is None
    with pytest.raises(ValueError, match="comma"):
        accepted("a,b")


def test_overlap_default_is_the_declared_config_default() -> None:
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    assert declared["rotationOverlapSeconds"]["default"] == DEFAULT_OVERLAP_SECONDS


def _problems(**raw: str) -> list[str]:
    base = {"environment": "local", "hosting": "local", "bridgeUrl": "http://127.0.0.1:9",
            "createAppSource": "true", "segmentApiUrl": "http://127.0.0.1:9",
            "segmentTrackingUrl": "http://127.0.0.1:9", "userflowApiUrl": "http://127.0.0.1:9"}
    secrets: dict[str, Any] = {"segmentToken": object(), "userflowApiKey": object()}
    parsed = parse_stack({**base, **raw}, "local", secrets, None)
    return [str(p) for p in parsed.problems]


def test_config_holds_the_overlap_at_or_above_the_bridge_cache_ttl() -> None:
    assert _problems(secretsTtlSeconds="300", rotationOverlapSeconds="300") == []
    [problem] = _problems(secretsTtlSeconds="300", rotationOverlapSeconds="299")
    assert "rotationOverlapSeconds" in problem and "secretsTtlSeconds" in problem


# -- Segment shared secret ---------------------------------------------------------------------


def _app_source(segment: Sandbox) -> str:
    body = {"slug": "app-rotation", "enabled": True, "metadataId": "iUM16Md8P2"}
    return str(segment_api(segment, "POST", "/sources", body)["data"]["source"]["id"])


def test_shared_secret_rotation_never_gives_segment_a_secret_the_bridge_does_not_accept(
    segment: Sandbox, clock: Clock
) -> None:
    provider = configured(SegmentWebhookDestinationProvider(FAST_RETRIES),
                          segmentApiUrl=segment.url, segmentToken=SEGMENT_TOKEN)
    args = SegmentWebhookDestinationArgs(source_id=_app_source(segment), bridge_url=BRIDGE,
                                         rotation_overlap_seconds=OVERLAP)
    inputs = provider.check({}, destination_inputs(args)).inputs

    def signing_secret() -> str:
        return str(segment.state()["destinations"][0]["settings"]["sharedSecret"])

    # GIVEN a new destination: the bridge accepts the secret in use and the staged next one
    created = provider.create(inputs)
    outs = dict(created.outs or {})
    first, staged = outs["shared_secret"], outs["next_shared_secret"]
    assert signing_secret() == first and staged != first
    assert split(outs["accepted_shared_secrets"]) == [first, staged]
    bumped = {**inputs, "shared_secret_rotation": 1}

    # WHEN the number is bumped before the staged secret was out for the overlap
    clock.advance(OVERLAP - 1)
    assert provider.diff(created.id, outs, bumped).changes is True
    early = dict(provider.update(created.id, outs, bumped).outs or {})
    # THEN nothing switches yet, and the rotation stays pending for the next `up`
    assert signing_secret() == first == early["shared_secret"]
    assert early["shared_secret_rotation"] == 0
    assert provider.diff(created.id, early, bumped).changes is True

    # WHEN the next `up` runs after the overlap
    clock.advance(1)
    switched = dict(provider.update(created.id, early, bumped).outs or {})
    # THEN Segment signs with the secret the bridge has accepted since creation, the old one
    # is still accepted, and a fresh one is staged
    assert signing_secret() == staged == switched["shared_secret"]
    fresh = switched["next_shared_secret"]
    assert fresh not in (first, staged)
    assert split(switched["accepted_shared_secrets"]) == [staged, fresh, first]
    assert switched["shared_secret_rotation"] == 1
    assert provider.diff(created.id, switched, bumped).changes is True  # old one to drop

    # WHEN an `up` runs before the old secret's overlap is over THEN it stays accepted
    clock.advance(OVERLAP - 1)
    waiting = dict(provider.update(created.id, switched, bumped).outs or {})
    assert first in split(waiting["accepted_shared_secrets"])
    # WHEN after it THEN the old secret is dropped, and the rotation is complete
    clock.advance(1)
    done = dict(provider.update(created.id, waiting, bumped).outs or {})
    assert split(done["accepted_shared_secrets"]) == [staged, fresh]
    assert provider.diff(created.id, done, bumped).changes is False
    # AND a refresh keeps the rotation state (Segment masks the secret; state is its home)
    read = dict(provider.read(created.id, done).outs or {})
    assert read["accepted_shared_secrets"] == done["accepted_shared_secrets"]
    assert provider.diff(created.id, read, bumped).changes is False


# -- Segment write key -------------------------------------------------------------------------


def _track_with(segment: Sandbox, write_key: str, message_id: str) -> None:
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    reply = requests.post(f"{segment.url}/v1/track", timeout=5,
                          headers={"Authorization": f"Basic {auth}"},
                          json={"userId": "u1", "event": "Probe", "messageId": message_id})
    assert reply.status_code == 200


def _accepted_message_ids(segment: Sandbox) -> list[str]:
    events = segment.state()["events"]
    return [e["messageId"] for source_events in events.values() for e in source_events]


def test_write_key_rotation_keeps_the_old_key_valid_until_the_overlap_is_over(
    segment: Sandbox, clock: Clock
) -> None:
    provider = configured(SegmentSourceProvider(FAST_RETRIES),
                          segmentApiUrl=segment.url, segmentToken=SEGMENT_TOKEN)
    args = SegmentSourceArgs(slug="userflow-rotation", name="Userflow (rotation)",
                             rotation_overlap_seconds=OVERLAP)
    inputs = provider.check({}, source_inputs(args)).inputs
    created = provider.create(inputs)
    outs = dict(created.outs or {})
    old = outs["write_key"]
    bumped = {**inputs, "write_key_rotation": 1}
    assert provider.diff(created.id, outs, inputs).changes is False
    assert provider.diff(created.id, outs, bumped).changes is True

    # WHEN bumped THEN a new key is handed out, and both work at Segment
    rotated = dict(provider.update(created.id, outs, bumped).outs or {})
    new = rotated["write_key"]
    assert new != old and rotated["previous_write_key"] == old
    assert sorted(segment.state()["sources"][0]["writeKeys"]) == sorted([old, new])
    _track_with(segment, old, "m-old-during")
    _track_with(segment, new, "m-new")
    assert {"m-old-during", "m-new"} <= set(_accepted_message_ids(segment))
    assert provider.diff(created.id, rotated, bumped).changes is True

    # WHEN an `up` runs within the overlap THEN the old key stays
    clock.advance(OVERLAP - 1)
    waiting = dict(provider.update(created.id, rotated, bumped).outs or {})
    assert old in segment.state()["sources"][0]["writeKeys"]
    # WHEN after it THEN the old key is removed from the source, and Segment drops its events
    clock.advance(1)
    done = dict(provider.update(created.id, waiting, bumped).outs or {})
    assert segment.state()["sources"][0]["writeKeys"] == [new] and done["write_key"] == new
    assert done["previous_write_key"] is None
    _track_with(segment, old, "m-old-after")
    assert "m-old-after" not in _accepted_message_ids(segment)
    assert provider.diff(created.id, done, bumped).changes is False
    read = dict(provider.read(created.id, done).outs or {})
    assert read["write_key"] == new
    assert provider.diff(created.id, read, bumped).changes is False


def test_state_from_before_rotation_needs_no_update() -> None:
    """A stack deployed before rotation existed has no rotation number: it never rotated."""
    provider = SegmentSourceProvider()
    inputs = {**source_inputs(SegmentSourceArgs(slug="userflow-x", name="U")),
              "metadata_id": "iUM16Md8P2"}
    olds = {**inputs, "source_id": "s1", "write_key": "wk"}
    del olds["write_key_rotation"]
    assert provider.diff("s1", olds, inputs).changes is False
    assert provider.diff("s1", olds, {**inputs, "write_key_rotation": 1}).changes is True


# -- Userflow webhook secret -------------------------------------------------------------------


def test_webhook_rotation_replaces_the_subscription_without_an_unknown_secret(
    userflow: Sandbox, clock: Clock
) -> None:
    provider = configured(UserflowWebhookSubscriptionProvider(FAST_RETRIES),
                          userflowApiUrl=userflow.url, userflowApiKey=USERFLOW_KEY)
    args = UserflowWebhookSubscriptionArgs(bridge_url=BRIDGE, rotation_overlap_seconds=OVERLAP)
    inputs = provider.check({}, webhook_inputs(args)).inputs
    created = provider.create(inputs)
    outs = dict(created.outs or {})
    old_id, old_secret = outs["subscription_id"], outs["secret"]
    assert split(outs["accepted_secrets"]) == [old_secret]
    bumped = {**inputs, "secret_rotation": 1}

    def subscriptions() -> dict[str, dict[str, Any]]:
        return {s["id"]: s for s in userflow.state()["webhook_subscriptions"]}

    # WHEN bumped THEN step 1: a replacement exists, disabled, and the bridge accepts both
    step1 = dict(provider.update(created.id, outs, bumped).outs or {})
    new_id, new_secret = step1["next_subscription_id"], step1["next_secret"]
    assert set(subscriptions()) == {old_id, new_id}
    assert subscriptions()[new_id]["disabled"] is True
    assert subscriptions()[old_id]["disabled"] is False
    assert split(step1["accepted_secrets"]) == [old_secret, new_secret]
    assert step1["secret_rotation"] == 0

    # WHEN an `up` runs within the overlap THEN nothing switches
    clock.advance(OVERLAP - 1)
    assert provider.diff(created.id, step1, bumped).changes is True
    waiting = dict(provider.update(created.id, step1, bumped).outs or {})
    assert subscriptions()[new_id]["disabled"] is True

    # WHEN after it THEN step 2: the replacement is live, the old one deleted, both accepted
    clock.advance(1)
    step2 = dict(provider.update(created.id, waiting, bumped).outs or {})
    assert set(subscriptions()) == {new_id}
    assert subscriptions()[new_id]["disabled"] is False
    assert subscriptions()[new_id]["url"] == BRIDGE + "/userflow"
    assert (step2["subscription_id"], step2["secret"]) == (new_id, new_secret)
    assert split(step2["accepted_secrets"]) == [new_secret, old_secret]
    assert step2["secret_rotation"] == 1

    # WHEN a refresh runs THEN it reads the live subscription (the Pulumi id is the first one)
    read = dict(provider.read(created.id, step2).outs or {})
    assert read["subscription_id"] == new_id and read["accepted_secrets"] == step2[
        "accepted_secrets"]

    # WHEN the old secret's overlap is over THEN step 3 drops it; the rotation is complete
    clock.advance(OVERLAP)
    assert provider.diff(created.id, read, bumped).changes is True
    done = dict(provider.update(created.id, read, bumped).outs or {})
    assert split(done["accepted_secrets"]) == [new_secret]
    assert provider.diff(created.id, done, bumped).changes is False

    # AND delete removes the live subscription, not the long-gone first one
    provider.delete(created.id, done)
    assert subscriptions() == {}


def test_delete_during_a_webhook_rotation_leaves_no_subscription(
    userflow: Sandbox, clock: Clock
) -> None:
    provider = configured(UserflowWebhookSubscriptionProvider(FAST_RETRIES),
                          userflowApiUrl=userflow.url, userflowApiKey=USERFLOW_KEY)
    inputs = provider.check({}, webhook_inputs(UserflowWebhookSubscriptionArgs(
        bridge_url=BRIDGE, rotation_overlap_seconds=OVERLAP))).inputs
    created = provider.create(inputs)
    step1 = provider.update(created.id, dict(created.outs or {}),
                            {**inputs, "secret_rotation": 1}).outs
    assert len(userflow.state()["webhook_subscriptions"]) == 2
    provider.delete(created.id, dict(step1 or {}))
    assert userflow.state()["webhook_subscriptions"] == []


@pytest.mark.parametrize("bad", [-1, 1.5, "600", True])
def test_each_provider_refuses_a_bad_overlap(bad: Any) -> None:
    checks = [
        SegmentWebhookDestinationProvider().check(
            {}, destination_inputs(SegmentWebhookDestinationArgs(source_id="s", bridge_url=BRIDGE))
            | {"rotation_overlap_seconds": bad}),
        SegmentSourceProvider().check(
            {}, source_inputs(SegmentSourceArgs(slug="u", name="U"))
            | {"rotation_overlap_seconds": bad}),
        UserflowWebhookSubscriptionProvider().check(
            {}, webhook_inputs(UserflowWebhookSubscriptionArgs(bridge_url=BRIDGE))
            | {"rotation_overlap_seconds": bad}),
    ]
    for result in checks:
        assert [f.property for f in result.failures
                if f.property != "config"] == ["rotation_overlap_seconds"]


def test_a_second_bump_waits_for_the_first_rotation_to_finish(
    segment: Sandbox, userflow: Sandbox, clock: Clock
) -> None:
    destinations = configured(SegmentWebhookDestinationProvider(FAST_RETRIES),
                              segmentApiUrl=segment.url, segmentToken=SEGMENT_TOKEN)
    inputs = destinations.check({}, destination_inputs(SegmentWebhookDestinationArgs(
        source_id=_app_source(segment), bridge_url=BRIDGE,
        rotation_overlap_seconds=OVERLAP))).inputs
    created = destinations.create(inputs)
    clock.advance(OVERLAP)
    once = dict(destinations.update(created.id, dict(created.outs or {}),
                                    {**inputs, "shared_secret_rotation": 1}).outs or {})
    # WHEN bumped again while the old secret is still accepted THEN no second switch yet
    twice = {**inputs, "shared_secret_rotation": 2}
    clock.advance(OVERLAP - 1)
    waiting = dict(destinations.update(created.id, once, twice).outs or {})
    assert waiting["shared_secret"] == once["shared_secret"]
    assert waiting["shared_secret_rotation"] == 1
    # WHEN the old secret's overlap is over THEN it is dropped and the second switch runs
    clock.advance(1)
    second = dict(destinations.update(created.id, waiting, twice).outs or {})
    assert second["shared_secret"] == once["next_shared_secret"]
    assert second["previous_shared_secret"] == once["shared_secret"]
    assert once["previous_shared_secret"] not in split(second["accepted_shared_secrets"])

    webhooks = configured(UserflowWebhookSubscriptionProvider(FAST_RETRIES),
                          userflowApiUrl=userflow.url, userflowApiKey=USERFLOW_KEY)
    hook_inputs = webhooks.check({}, webhook_inputs(UserflowWebhookSubscriptionArgs(
        bridge_url=BRIDGE, rotation_overlap_seconds=OVERLAP))).inputs
    hook = webhooks.create(hook_inputs)
    step1 = dict(webhooks.update(hook.id, dict(hook.outs or {}),
                                 {**hook_inputs, "secret_rotation": 1}).outs or {})
    again = dict(webhooks.update(hook.id, step1, {**hook_inputs, "secret_rotation": 2}).outs or {})
    # THEN a bump during step 1 makes no third subscription
    assert len(userflow.state()["webhook_subscriptions"]) == 2
    assert again["next_subscription_id"] == step1["next_subscription_id"]
