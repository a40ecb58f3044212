"""Userflow emulator, webhooks: topic matching, the signature (verified here with our own
HMAC code), what fires when, retries, and simulated in-app activity."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import requests

from sandbox.userflow import UserflowEmulator
from sandbox.userflow.webhooks import topic_matches
from tests.emulators.helpers import userflow_headers
from tests.emulators.receiver import Received, Receiver


def _post(emu: UserflowEmulator, path: str, body: Any) -> requests.Response:
    return requests.post(emu.url + path, json=body, headers=userflow_headers(), timeout=5)


def _subscribe(emu: UserflowEmulator, url: str, topics: list[str]) -> dict[str, Any]:
    response = _post(
        emu, "/webhook_subscriptions", {"api_version": "2020-01-03", "url": url, "topics": topics}
    )
    assert response.status_code == 200, response.text
    subscription: dict[str, Any] = response.json()
    return subscription


def _verify(received: Received, secret: str, tolerance_s: int = 300) -> dict[str, Any]:
    """Our own check of `Userflow-Signature: t=<unix>,v1=<hex>`, then the parsed body."""
    parts = dict(item.split("=", 1) for item in received.headers["Userflow-Signature"].split(","))
    stamp = int(parts["t"])
    assert abs(time.time() - stamp) <= tolerance_s
    expected = hmac.new(
        secret.encode(), f"{stamp}.".encode() + received.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    notification: dict[str, Any] = json.loads(received.body)
    return notification


def _settle(emu: UserflowEmulator) -> None:
    assert emu.deliveries.wait_idle(10.0)


@pytest.mark.parametrize(
    ("subscribed", "topic", "expected"),
    [
        ("*", "user.created", True),
        ("*", "event.tracked.flow_started", True),
        ("user", "user.created", True),
        ("user", "user.updated", True),
        ("user", "users.created", False),
        ("user.created", "user.updated", False),
        ("group", "group.updated", True),
        ("group", "user.created", False),
        ("event", "event.tracked.flow_started", True),
        ("event.tracked", "event.tracked.flow_started", True),
        ("event.tracked.flow_started", "event.tracked.flow_started", True),
        ("event.tracked.flow_started", "event.tracked.flow_completed", False),
        ("event.tracked.flow", "event.tracked.flow_started", False),
    ],
)
def test_topic_matching_is_hierarchical(subscribed: str, topic: str, expected: bool) -> None:
    assert topic_matches(subscribed, topic) is expected


def test_user_created_notification_is_signed(
    userflow: UserflowEmulator, receiver: Receiver
) -> None:
    subscription = _subscribe(userflow, receiver.url + "/userflow", ["user"])

    _post(userflow, "/users", {"id": "u1", "attributes": {"name": "Ann"}})
    [received] = receiver.wait_for(1)

    notification = _verify(received, subscription["secret"])
    assert received.path == "/userflow" and received.method == "POST"
    assert received.headers["Content-Type"] == "application/json"
    assert notification["object"] == "webhook_notification"
    assert notification["api_version"] == "2020-01-03"
    assert notification["topic"] == "user.created"
    assert notification["id"] and notification["created_at"]
    assert notification["data"]["object"]["id"] == "u1"
    assert notification["data"]["object"]["attributes"] == {"name": "Ann"}


def test_a_wrong_secret_does_not_verify(userflow: UserflowEmulator, receiver: Receiver) -> None:
    _subscribe(userflow, receiver.url, ["user"])

    _post(userflow, "/users", {"id": "u1"})
    [received] = receiver.wait_for(1)

    with pytest.raises(AssertionError):
        _verify(received, "not-the-secret")


def test_updates_fire_only_on_change(userflow: UserflowEmulator, receiver: Receiver) -> None:
    _subscribe(userflow, receiver.url, ["*"])

    _post(userflow, "/users", {"id": "u1", "attributes": {"plan": "free"}})
    _post(userflow, "/users", {"id": "u1", "attributes": {"plan": "free"}})  # no change
    _post(userflow, "/users", {"id": "u1", "attributes": {"plan": "pro"}})
    _post(userflow, "/groups", {"id": "g1", "attributes": {"name": "Acme"}})
    _post(userflow, "/groups", {"id": "g1", "attributes": {"name": "Acme"}})  # no change
    _post(userflow, "/groups", {"id": "g1", "attributes": {"name": "Acme Inc"}})
    _settle(userflow)

    topics = [json.loads(r.body)["topic"] for r in receiver.requests]
    assert sorted(topics) == sorted(
        ["user.created", "user.updated", "group.created", "group.updated"]
    )
    assert [n["topic"] for n in userflow.state()["notifications"]] == [
        "user.created",
        "user.updated",
        "group.created",
        "group.updated",
    ]


def test_event_notification_topic_and_object(
    userflow: UserflowEmulator, receiver: Receiver
) -> None:
    subscription = _subscribe(userflow, receiver.url, ["event.tracked"])
    _post(userflow, "/users", {"id": "u1"})

    _post(
        userflow,
        "/events",
        {"user_id": "u1", "name": "report_exported", "attributes": {"format": "csv"}},
    )
    [received] = receiver.wait_for(1)

    notification = _verify(received, subscription["secret"])
    assert notification["topic"] == "event.tracked.report_exported"
    event = notification["data"]["object"]
    assert event["object"] == "event" and event["name"] == "report_exported"
    assert event["user_id"] == "u1" and event["attributes"] == {"format": "csv"}
    assert set(event) >= {"id", "group_id", "time", "created_at"}


def test_only_matching_enabled_subscriptions_receive(userflow: UserflowEmulator) -> None:
    with Receiver() as flows, Receiver() as users, Receiver() as disabled:
        _subscribe(userflow, flows.url, ["event.tracked.flow_completed"])
        _subscribe(userflow, users.url, ["user.created"])
        off = _subscribe(userflow, disabled.url, ["*"])
        requests.patch(
            f"{userflow.url}/webhook_subscriptions/{off['id']}",
            json={"disabled": True},
            headers=userflow_headers(),
            timeout=5,
        )

        _post(userflow, "/users", {"id": "u1"})
        requests.post(
            userflow.url + "/__sandbox__/simulate",
            json={"user_id": "u1", "activity": "flow"},
            timeout=5,
        )
        _settle(userflow)

        assert [json.loads(r.body)["topic"] for r in flows.requests] == [
            "event.tracked.flow_completed"
        ]
        assert [json.loads(r.body)["topic"] for r in users.requests] == ["user.created"]
        assert disabled.requests == []


def test_one_notification_id_per_change_across_subscriptions(userflow: UserflowEmulator) -> None:
    with Receiver() as first, Receiver() as second:
        _subscribe(userflow, first.url, ["user"])
        _subscribe(userflow, second.url, ["*"])

        _post(userflow, "/users", {"id": "u1"})
        _settle(userflow)

        assert json.loads(first.requests[0].body)["id"] == json.loads(second.requests[0].body)["id"]


def test_non_2xx_is_retried_with_the_same_notification(userflow: UserflowEmulator) -> None:
    with Receiver(statuses=[500, 404, 200]) as flaky:
        subscription = _subscribe(userflow, flaky.url, ["user"])

        _post(userflow, "/users", {"id": "u1"})
        received = flaky.wait_for(3)
        _settle(userflow)

    assert [r.status for r in received] == [500, 404, 200]
    assert len({json.loads(r.body)["id"] for r in received}) == 1
    for attempt in received:
        _verify(attempt, subscription["secret"])
    deliveries = userflow.state()["deliveries"]
    assert [(d["attempt"], d["status"]) for d in deliveries] == [(1, 500), (2, 404), (3, 200)]
    assert deliveries[0]["topic"] == "user.created"


def test_simulated_flow_records_started_and_completed(
    userflow: UserflowEmulator, receiver: Receiver
) -> None:
    subscription = _subscribe(userflow, receiver.url, ["event"])
    _post(userflow, "/users", {"id": "u1"})

    response = requests.post(
        userflow.url + "/__sandbox__/simulate",
        json={"user_id": "u1", "activity": "flow", "group_id": "g1"},
        timeout=5,
    )
    received = receiver.wait_for(2)

    assert response.status_code == 200
    names = [e["name"] for e in response.json()["events"]]
    assert names == ["flow_started", "flow_completed"]
    started, completed = response.json()["events"]
    for key in ("flow_id", "flow_name", "flow_version_id"):
        assert started["attributes"][key] == completed["attributes"][key]
    assert started["group_id"] == "g1"
    notifications = [_verify(r, subscription["secret"]) for r in received]
    assert sorted(n["topic"] for n in notifications) == [
        "event.tracked.flow_completed",
        "event.tracked.flow_started",
    ]
    assert [e["name"] for e in userflow.state()["events"]] == names


def test_simulated_checklist_task(userflow: UserflowEmulator, receiver: Receiver) -> None:
    _subscribe(userflow, receiver.url, ["event.tracked.checklist_task_completed"])
    _post(userflow, "/users", {"id": "u1"})

    response = requests.post(
        userflow.url + "/__sandbox__/simulate",
        json={"user_id": "u1", "activity": "checklist_task", "task_name": "Connect Segment"},
        timeout=5,
    )
    [received] = receiver.wait_for(1)

    [event] = response.json()["events"]
    assert event["name"] == "checklist_task_completed"
    assert event["attributes"]["task_name"] == "Connect Segment"
    assert {"checklist_id", "checklist_name"} <= set(event["attributes"])
    assert json.loads(received.body)["data"]["object"]["id"] == event["id"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"user_id": "nobody", "activity": "flow"}, 404),
        ({"user_id": "u1", "activity": "dance"}, 400),
        ({"activity": "flow"}, 400),
    ],
)
def test_simulate_validation(userflow: UserflowEmulator, body: dict[str, Any], status: int) -> None:
    _post(userflow, "/users", {"id": "u1"})

    response = requests.post(userflow.url + "/__sandbox__/simulate", json=body, timeout=5)

    assert response.status_code == status
    assert userflow.state()["events"] == []


def test_reset_forgets_everything(userflow: UserflowEmulator, receiver: Receiver) -> None:
    _subscribe(userflow, receiver.url, ["user"])
    _post(userflow, "/users", {"id": "u1"})
    _settle(userflow)

    requests.post(userflow.url + "/__sandbox__/reset", timeout=5)
    state = userflow.state()

    assert state["users"] == state["webhook_subscriptions"] == state["notifications"] == []
    assert requests.get(userflow.url + "/__sandbox__/state", timeout=5).json()["deliveries"] == []
