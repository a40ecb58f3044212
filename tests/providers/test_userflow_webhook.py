"""UserflowWebhookSubscription: pure mapping/validation, then the provider's whole lifecycle
against the Userflow emulator."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from components.api_http import ApiError, RetryPolicy
from components.provider import unknown
from components.userflow_webhook import (
    DEFAULT_TOPICS,
    UserflowWebhookSubscriptionArgs,
    UserflowWebhookSubscriptionProvider,
    create_webhook_body,
    desired_webhook_view,
    validate_webhook_inputs,
    webhook_inputs,
    webhook_state,
    with_webhook_defaults,
)
from tests.providers.conftest import (
    FAST_RETRIES,
    USERFLOW_KEY,
    BridgeStandIn,
    Sandbox,
    configured,
    userflow_api,
)

BRIDGE = "https://bridge.example.com"


def inputs_of(**overrides: Any) -> dict[str, Any]:
    args = UserflowWebhookSubscriptionArgs(bridge_url=BRIDGE)
    return with_webhook_defaults({**webhook_inputs(args), **overrides})


# -- pure ----------------------------------------------------------------------------------------


def test_default_topics_are_userflow_built_in_events_only() -> None:
    assert "event.tracked.flow_started" in DEFAULT_TOPICS
    assert "event.tracked.checklist_task_completed" in DEFAULT_TOPICS
    # Not `*`, `event` or `event.tracked`: those would echo back what the bridge wrote.
    assert all(t.startswith("event.tracked.") and t.count(".") == 2 for t in DEFAULT_TOPICS)


def test_create_body() -> None:
    body = create_webhook_body(inputs_of(topics=["user", "event.tracked.flow_started", "user"]))
    assert body == {
        "api_version": "2020-01-03",
        "url": BRIDGE + "/userflow",
        "topics": ["event.tracked.flow_started", "user"],
    }


def test_empty_topics_fall_back_to_the_defaults() -> None:
    args = UserflowWebhookSubscriptionArgs(bridge_url=BRIDGE, topics=[])
    assert webhook_inputs(args)["topics"] == list(DEFAULT_TOPICS)


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"topics": ["event.tracked.Flow Started"]}, "topics", "unknown topic"),
        ({"topics": "user"}, "topics", "at least one"),
        ({"bridge_url": "http://bridge.example.com"}, "bridge_url", "plain http"),
        ({"api_version": "2024-01-01"}, "api_version", "2020-01-03"),
    ],
)
def test_validation_says_what_to_fix(overrides: dict[str, Any], field: str, words: str) -> None:
    failures = dict(validate_webhook_inputs(inputs_of(**overrides)))
    assert list(failures) == [field]
    assert words in failures[field]


def test_state_keeps_the_known_secret_when_the_api_omits_it() -> None:
    subscription = {"id": "w1", "url": "u", "topics": ["b", "a"], "api_version": "2020-01-03"}
    assert webhook_state(subscription, "known")["secret"] == "known"
    assert webhook_state({**subscription, "secret": "new"}, "known")["secret"] == "new"
    assert webhook_state(subscription, None)["topics"] == ["a", "b"]


@pytest.mark.parametrize(
    ("overrides", "changes", "replaces"),
    [
        ({}, False, []),
        ({"topics": list(reversed(DEFAULT_TOPICS))}, False, []),
        ({"topics": ["user"]}, True, []),
        ({"bridge_url": "https://other.example.com"}, True, []),
        ({"bridge_url": unknown()}, True, []),
    ],
)
def test_diff(overrides: dict[str, Any], changes: bool, replaces: list[str]) -> None:
    olds = {**desired_webhook_view(inputs_of()), "subscription_id": "w1", "secret": "s"}
    result = UserflowWebhookSubscriptionProvider().diff("w1", olds, inputs_of(**overrides))
    assert result.changes is changes and result.replaces == replaces


def test_an_api_version_change_replaces_deleting_first() -> None:
    olds = {**desired_webhook_view(inputs_of()), "subscription_id": "w1", "secret": "s"}
    result = UserflowWebhookSubscriptionProvider().diff("w1", olds, inputs_of(api_version="x"))
    assert result.replaces == ["api_version"] and result.delete_before_replace is True


def test_check_says_how_to_set_a_missing_api_key() -> None:
    provider = configured(UserflowWebhookSubscriptionProvider())
    reasons = [f.reason for f in provider.check({}, inputs_of()).failures]
    assert any("pulumi config set --secret userflow-segment:userflowApiKey" in r for r in reasons)


# -- lifecycle against the emulator --------------------------------------------------------------


def provider_for(
    userflow: Sandbox, policy: RetryPolicy = FAST_RETRIES
) -> UserflowWebhookSubscriptionProvider:
    return configured(
        UserflowWebhookSubscriptionProvider(policy),
        userflowApiUrl=userflow.url,
        userflowApiKey=USERFLOW_KEY,
    )


def checked(provider: UserflowWebhookSubscriptionProvider, **fields: Any) -> dict[str, Any]:
    result = provider.check({}, webhook_inputs(UserflowWebhookSubscriptionArgs(**fields)))
    assert result.failures == []
    return result.inputs


def subscriptions(userflow: Sandbox) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = userflow.state()["webhook_subscriptions"]
    return found


def test_lifecycle(userflow: Sandbox) -> None:
    provider = provider_for(userflow)
    inputs = checked(provider, bridge_url="http://127.0.0.1:8787")

    created = provider.create(inputs)
    outs = created.outs
    assert outs is not None
    [stored] = subscriptions(userflow)
    assert stored["id"] == created.id == outs["subscription_id"]
    assert stored["url"] == "http://127.0.0.1:8787/userflow"
    assert sorted(stored["topics"]) == sorted(DEFAULT_TOPICS)
    assert stored["secret"] == outs["secret"]

    # a second `up`: nothing to do, no API call
    calls = userflow.api_calls()
    again = provider.check(
        outs, webhook_inputs(UserflowWebhookSubscriptionArgs(bridge_url="http://127.0.0.1:8787"))
    )
    assert provider.diff(created.id, outs, again.inputs).changes is False
    assert userflow.api_calls() == calls

    # update: topics; same id and secret
    new_inputs = {**inputs, "topics": ["event.tracked.flow_completed"]}
    updated = provider.update(created.id, outs, new_inputs)
    assert updated.outs is not None
    [stored] = subscriptions(userflow)
    assert stored["topics"] == ["event.tracked.flow_completed"]
    assert updated.outs["secret"] == outs["secret"]

    # refresh after an out-of-band change: drift shows, update puts it back
    userflow_api(
        userflow,
        "PATCH",
        f"/webhook_subscriptions/{created.id}",
        {"url": "https://x.example.com/h"},
    )
    drifted = provider.read(created.id, updated.outs)
    assert drifted.outs is not None and drifted.outs["url"] == "https://x.example.com/h"
    assert provider.diff(created.id, drifted.outs, new_inputs).changes is True
    provider.update(created.id, drifted.outs, new_inputs)
    assert subscriptions(userflow)[0]["url"] == "http://127.0.0.1:8787/userflow"

    # refresh after an out-of-band deletion: gone
    userflow_api(userflow, "DELETE", f"/webhook_subscriptions/{created.id}")
    gone = provider.read(created.id, updated.outs)
    assert gone.id == "" and gone.outs == {}

    # destroy leaves nothing; deleting again is fine
    recreated = provider.create(inputs)
    provider.delete(recreated.id, recreated.outs or {})
    assert subscriptions(userflow) == []
    provider.delete(recreated.id, recreated.outs or {})


def test_create_whose_response_was_lost_then_retry_leaves_exactly_one(userflow: Sandbox) -> None:
    impatient = RetryPolicy(max_attempts=3, max_wait_s=0.05, base_backoff_s=0.01, timeout_s=0.3)
    provider = provider_for(userflow, impatient)
    inputs = checked(provider, bridge_url=BRIDGE)
    # Userflow carries out the POST, but only after the client gave up: `up` dies.
    userflow.fault(method="POST", path_prefix="/webhook_subscriptions", delay_s=0.8, count=1)
    with pytest.raises(ApiError, match="no response"):
        provider.create(inputs)
    deadline = time.monotonic() + 5.0
    while not subscriptions(userflow) and time.monotonic() < deadline:
        time.sleep(0.05)
    [orphan] = subscriptions(userflow)

    retried = provider_for(userflow).create(inputs)
    [stored] = subscriptions(userflow)
    assert retried.id == orphan["id"] == stored["id"]
    assert retried.outs is not None and retried.outs["secret"] == stored["secret"]


def test_429_storm_during_create(userflow: Sandbox) -> None:
    provider = provider_for(userflow)
    userflow.fault(
        method="POST", path_prefix="/webhook_subscriptions", status=429, count=4, retry_after=0
    )
    created = provider.create(checked(provider, bridge_url=BRIDGE))
    assert [s["id"] for s in subscriptions(userflow)] == [created.id]
    posts = [r["status"] for r in userflow.requests() if r["method"] == "POST"]
    assert posts == [429, 429, 429, 429, 200]


def test_errors_show_the_userflow_error_body_but_not_the_key(userflow: Sandbox) -> None:
    provider = provider_for(userflow)
    with pytest.raises(ApiError) as caught:
        provider.update("nosuch", {}, inputs_of())
    message = str(caught.value)
    assert "update webhook subscription nosuch" in message and "not_found" in message
    assert USERFLOW_KEY not in message


def test_userflow_sends_its_own_events_to_the_bridge_signed_with_the_output_secret(
    userflow: Sandbox, bridge: BridgeStandIn
) -> None:
    provider = provider_for(userflow)
    created = provider.create(checked(provider, bridge_url=bridge.url))
    assert created.outs is not None
    secret = created.outs["secret"]

    # A user written by the bridge (user.created) is not a default topic: no echo.
    userflow_api(userflow, "POST", "/users", {"id": "u1", "attributes": {"name": "Ada"}})
    userflow_api(userflow, "POST", "/__sandbox__/simulate", {"user_id": "u1", "activity": "flow"})

    deliveries = bridge.wait_for(2)
    topics = sorted(json.loads(d.body)["topic"] for d in deliveries)
    assert topics == ["event.tracked.flow_completed", "event.tracked.flow_started"]
    for delivery in deliveries:
        assert delivery.path == "/userflow"
        fields = dict(
            part.split("=", 1) for part in delivery.headers["Userflow-Signature"].split(",")
        )
        signed = f"{fields['t']}.".encode() + delivery.body
        assert fields["v1"] == hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    time.sleep(0.3)
    assert len(bridge.deliveries) == 2
