"""Userflow emulator, REST API: headers, errors, upsert-merge, groups/memberships, events,
lists, webhook subscription CRUD, injected 429s."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from sandbox.userflow import UserflowEmulator
from tests.emulators.helpers import userflow_headers


def _call(
    emu: UserflowEmulator, method: str, path: str, body: Any = None, **kwargs: Any
) -> requests.Response:
    headers = kwargs.pop("headers", userflow_headers())
    return requests.request(method, emu.url + path, json=body, headers=headers, timeout=5, **kwargs)


def _error(response: requests.Response) -> dict[str, str]:
    body: dict[str, dict[str, str]] = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


# -- headers and errors ------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer ak_wrong", "ak_sandbox_local"])
def test_unknown_or_missing_key_is_401(
    userflow: UserflowEmulator, authorization: str | None
) -> None:
    headers = {"Userflow-Version": "2020-01-03"}
    if authorization:
        headers["Authorization"] = authorization

    response = _call(userflow, "GET", "/users/u1", headers=headers)

    assert response.status_code == 401
    assert _error(response)["code"] == "unauthorized"


@pytest.mark.parametrize("version", [None, "2019-01-01"])
def test_userflow_version_header_is_required(
    userflow: UserflowEmulator, version: str | None
) -> None:
    headers = {"Authorization": "Bearer ak_sandbox_local"}
    if version:
        headers["Userflow-Version"] = version

    response = _call(userflow, "POST", "/users", {"id": "u1"}, headers=headers)

    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_version"
    assert "2020-01-03" in _error(response)["message"]
    assert userflow.state()["users"] == []


def test_extra_api_keys_are_accepted() -> None:
    with UserflowEmulator(api_keys=["ak_staging"]) as emu:
        response = _call(
            emu, "POST", "/users", {"id": "u1"}, headers=userflow_headers("ak_staging")
        )

    assert response.status_code == 200


def test_invalid_json_is_400(userflow: UserflowEmulator) -> None:
    response = requests.post(
        userflow.url + "/users", data=b"{oops", headers=userflow_headers(), timeout=5
    )

    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_json"


def test_unknown_endpoint_is_404_and_wrong_method_405(userflow: UserflowEmulator) -> None:
    assert _call(userflow, "GET", "/nothing").status_code == 404
    assert _call(userflow, "PUT", "/users", {}).status_code == 405


# -- users -----------------------------------------------------------------------------------


def test_upsert_merges_attributes_and_leaves_others_untouched(userflow: UserflowEmulator) -> None:
    _call(userflow, "POST", "/users", {"id": "u1", "attributes": {"name": "Ann", "plan": "free"}})

    response = _call(
        userflow, "POST", "/users", {"id": "u1", "attributes": {"plan": "pro", "seats": 3}}
    )
    fetched = _call(userflow, "GET", "/users/u1")

    assert response.status_code == 200
    assert response.json()["attributes"] == {"name": "Ann", "plan": "pro", "seats": 3}
    assert fetched.json()["attributes"] == {"name": "Ann", "plan": "pro", "seats": 3}
    assert fetched.json()["object"] == "user" and fetched.json()["id"] == "u1"
    assert len(userflow.state()["users"]) == 1


def test_attribute_operations(userflow: UserflowEmulator) -> None:
    _call(
        userflow,
        "POST",
        "/users",
        {"id": "u1", "attributes": {"logins": 1, "tags": ["a"], "gone": "x", "first": "one"}},
    )

    response = _call(
        userflow,
        "POST",
        "/users",
        {
            "id": "u1",
            "attributes": {
                "logins": {"add": 2},
                "credits": {"subtract": 5},
                "tags": {"append": ["b", "c"]},
                "queue": {"prepend": "z"},
                "first": {"set_once": "two"},
                "since": {"set_once": "2024-01-01T00:00:00Z", "data_type": "datetime"},
                "gone": None,
                "signed_up_at": {"set": "2024-02-03T04:05:06Z", "data_type": "datetime"},
            },
        },
    )
    removed = _call(
        userflow, "POST", "/users", {"id": "u1", "attributes": {"tags": {"remove": "b"}}}
    )

    attributes = response.json()["attributes"]
    assert attributes["logins"] == 3
    assert attributes["credits"] == -5
    assert attributes["tags"] == ["a", "b", "c"]
    assert attributes["queue"] == ["z"]
    assert attributes["first"] == "one"
    assert attributes["since"] == "2024-01-01T00:00:00Z"
    assert "gone" not in attributes
    assert attributes["signed_up_at"] == "2024-02-03T04:05:06Z"
    assert removed.json()["attributes"]["tags"] == ["a", "c"]


@pytest.mark.parametrize(
    "attributes",
    [
        {"bad.name": 1},
        {"emoji🙂": 1},
        {"nested": {"a": {"b": 1}}},
        {"nested": {"unknown_op": 1}},
        {"two_ops": {"set": 1, "add": 1}},
        {"add_text": {"add": "x"}},
        {"typed": {"set": "not a number", "data_type": "number"}},
        {"typed": {"set": "x", "data_type": "uuid"}},
        {"list_of_objects": [{"a": 1}]},
        ["not", "an", "object"],
    ],
)
def test_invalid_attributes_are_400(userflow: UserflowEmulator, attributes: Any) -> None:
    response = _call(userflow, "POST", "/users", {"id": "u1", "attributes": attributes})

    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_attribute"
    assert userflow.state()["users"] == []


def test_attribute_names_with_spaces_and_dashes_are_fine(userflow: UserflowEmulator) -> None:
    response = _call(
        userflow, "POST", "/users", {"id": "u1", "attributes": {"Full name": "A", "x-y_z 9": True}}
    )

    assert response.status_code == 200


def test_groups_and_memberships_together_are_refused(userflow: UserflowEmulator) -> None:
    response = _call(
        userflow,
        "POST",
        "/users",
        {"id": "u1", "groups": [{"id": "g1"}], "memberships": [{"group": {"id": "g2"}}]},
    )

    assert response.status_code == 400
    assert "never both" in _error(response)["message"]


def test_groups_create_groups_and_memberships(userflow: UserflowEmulator) -> None:
    response = _call(
        userflow,
        "POST",
        "/users",
        {"id": "u1", "groups": [{"id": "g1", "attributes": {"name": "Acme"}}]},
    )

    [membership] = response.json()["memberships"]
    assert membership["group"]["id"] == "g1"
    assert membership["group"]["attributes"] == {"name": "Acme"}
    assert _call(userflow, "GET", "/groups/g1").json()["attributes"] == {"name": "Acme"}


def test_memberships_carry_attributes_and_prune_removes_the_rest(
    userflow: UserflowEmulator,
) -> None:
    _call(userflow, "POST", "/users", {"id": "u1", "groups": [{"id": "g1"}, {"id": "g2"}]})

    response = _call(
        userflow,
        "POST",
        "/users",
        {
            "id": "u1",
            "memberships": [{"attributes": {"role": "admin"}, "group": {"id": "g2"}}],
            "prune_memberships": True,
        },
    )

    [membership] = response.json()["memberships"]
    assert membership["group"]["id"] == "g2"
    assert membership["attributes"] == {"role": "admin"}
    assert {g["id"] for g in userflow.state()["groups"]} == {"g1", "g2"}  # groups stay


def test_without_prune_memberships_accumulate(userflow: UserflowEmulator) -> None:
    _call(userflow, "POST", "/users", {"id": "u1", "groups": [{"id": "g1"}]})

    response = _call(userflow, "POST", "/users", {"id": "u1", "groups": [{"id": "g2"}]})

    assert {m["group"]["id"] for m in response.json()["memberships"]} == {"g1", "g2"}


def test_delete_user_then_it_is_gone(userflow: UserflowEmulator) -> None:
    _call(userflow, "POST", "/users", {"id": "u1", "groups": [{"id": "g1"}]})

    deleted = _call(userflow, "DELETE", "/users/u1")
    fetched = _call(userflow, "GET", "/users/u1")
    again = _call(userflow, "DELETE", "/users/u1")

    assert deleted.json() == {"id": "u1", "object": "user", "deleted": True}
    assert fetched.status_code == 404 and _error(fetched)["code"] == "not_found"
    assert again.status_code == 404
    assert userflow.state()["memberships"] == []


def test_user_id_is_required(userflow: UserflowEmulator) -> None:
    response = _call(userflow, "POST", "/users", {"attributes": {"a": 1}})

    assert response.status_code == 400
    assert "id" in _error(response)["message"]


# -- groups ----------------------------------------------------------------------------------


def test_group_upsert_get_delete(userflow: UserflowEmulator) -> None:
    _call(userflow, "POST", "/groups", {"id": "g1", "attributes": {"name": "Acme", "size": 5}})
    merged = _call(userflow, "POST", "/groups", {"id": "g1", "attributes": {"size": 6}})

    assert merged.json()["attributes"] == {"name": "Acme", "size": 6}
    assert merged.json()["object"] == "group"
    assert _call(userflow, "DELETE", "/groups/g1").json()["deleted"] is True
    assert _call(userflow, "GET", "/groups/g1").status_code == 404


# -- events ----------------------------------------------------------------------------------


def test_event_is_stored_and_creates_an_unknown_user(userflow: UserflowEmulator) -> None:
    response = _call(
        userflow,
        "POST",
        "/events",
        {
            "user_id": "u9",
            "name": "project_created",
            "attributes": {"plan": "pro"},
            "group_id": "g9",
        },
    )

    event = response.json()
    assert response.status_code == 200
    assert event["object"] == "event" and event["name"] == "project_created"
    assert event["user_id"] == "u9" and event["group_id"] == "g9"
    assert event["attributes"] == {"plan": "pro"}
    assert event["time"] and event["created_at"]
    state = userflow.state()
    assert [u["id"] for u in state["users"]] == ["u9"]
    assert [g["id"] for g in state["groups"]] == ["g9"]
    assert [e["id"] for e in state["events"]] == [event["id"]]


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": "u1"},
        {"name": "x"},
        {"user_id": "u1", "name": "  "},
        {"user_id": "u1", "name": "x", "time": 5},
    ],
)
def test_event_validation(userflow: UserflowEmulator, body: dict[str, Any]) -> None:
    response = _call(userflow, "POST", "/events", body)

    assert response.status_code == 400
    assert userflow.state()["events"] == []


# -- lists -----------------------------------------------------------------------------------


def test_lists_page_with_limit_and_starting_after(userflow: UserflowEmulator) -> None:
    for index in range(5):
        _call(userflow, "POST", "/users", {"id": f"u{index}"})

    seen: list[str] = []
    path: str | None = "/users?limit=2"
    pages = 0
    while path is not None and pages < 10:
        page = _call(userflow, "GET", path).json()
        pages += 1
        assert page["object"] == "list"
        seen += [user["id"] for user in page["data"]]
        assert page["has_more"] == (page["next_page_url"] is not None)
        path = page["next_page_url"]

    assert pages == 3
    assert seen == [f"u{index}" for index in range(5)]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "starting_after=nobody"])
def test_bad_list_parameters_are_400(userflow: UserflowEmulator, query: str) -> None:
    assert _call(userflow, "GET", f"/users?{query}").status_code == 400


# -- webhook subscriptions -------------------------------------------------------------------


def test_webhook_subscription_crud(userflow: UserflowEmulator) -> None:
    created = _call(
        userflow,
        "POST",
        "/webhook_subscriptions",
        {
            "api_version": "2020-01-03",
            "url": "https://b.example/userflow",
            "topics": ["event.tracked.flow_completed", "user"],
        },
    ).json()
    fetched = _call(userflow, "GET", f"/webhook_subscriptions/{created['id']}").json()
    listed = _call(userflow, "GET", "/webhook_subscriptions").json()
    patched = _call(
        userflow,
        "PATCH",
        f"/webhook_subscriptions/{created['id']}",
        {"topics": ["*"], "disabled": True},
    ).json()
    deleted = _call(userflow, "DELETE", f"/webhook_subscriptions/{created['id']}")

    assert created["object"] == "webhook_subscription"
    assert created["api_version"] == "2020-01-03" and created["disabled"] is False
    assert len(created["secret"]) >= 32
    assert fetched == created
    assert [s["id"] for s in listed["data"]] == [created["id"]]
    assert patched["topics"] == ["*"] and patched["disabled"] is True
    assert patched["url"] == "https://b.example/userflow"
    assert patched["secret"] == created["secret"]
    assert deleted.json()["deleted"] is True
    assert _call(userflow, "GET", f"/webhook_subscriptions/{created['id']}").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://b.example", "topics": ["user"]},
        {"api_version": "2019-01-01", "url": "https://b.example", "topics": ["user"]},
        {"api_version": "2020-01-03", "url": "ftp://b.example", "topics": ["user"]},
        {"api_version": "2020-01-03", "url": "https://b.example", "topics": []},
        {"api_version": "2020-01-03", "url": "https://b.example", "topics": ["users.created"]},
    ],
)
def test_webhook_subscription_validation(userflow: UserflowEmulator, body: dict[str, Any]) -> None:
    response = _call(userflow, "POST", "/webhook_subscriptions", body)

    assert response.status_code == 400
    assert userflow.state()["webhook_subscriptions"] == []


def test_patch_refuses_fields_it_cannot_change(userflow: UserflowEmulator) -> None:
    created = _call(
        userflow,
        "POST",
        "/webhook_subscriptions",
        {"api_version": "2020-01-03", "url": "https://b.example", "topics": ["user"]},
    ).json()

    response = _call(
        userflow, "PATCH", f"/webhook_subscriptions/{created['id']}", {"secret": "mine"}
    )

    assert response.status_code == 400


def test_same_seed_gives_the_same_ids_and_secrets() -> None:
    body = {"api_version": "2020-01-03", "url": "https://b.example", "topics": ["user"]}
    results = []
    for _ in range(2):
        with UserflowEmulator(seed=7) as emu:
            results.append(_call(emu, "POST", "/webhook_subscriptions", body).json())
    with UserflowEmulator(seed=8) as emu:
        other = _call(emu, "POST", "/webhook_subscriptions", body).json()

    assert results[0]["id"] == results[1]["id"]
    assert results[0]["secret"] == results[1]["secret"]
    assert other["secret"] != results[0]["secret"]


# -- faults ----------------------------------------------------------------------------------


def test_injected_429_carries_retry_after(userflow: UserflowEmulator) -> None:
    requests.post(
        userflow.url + "/__sandbox__/faults",
        json={
            "path_prefix": "/users",
            "method": "POST",
            "status": 429,
            "count": 1,
            "retry_after": 2,
        },
        timeout=5,
    )

    limited = _call(userflow, "POST", "/users", {"id": "u1"})
    passed = _call(userflow, "POST", "/users", {"id": "u1"})

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert _error(limited)["code"] == "rate_limited"
    assert passed.status_code == 200
    log = requests.get(userflow.url + "/__sandbox__/requests", timeout=5).json()["requests"]
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("POST", "/users", 429),
        ("POST", "/users", 200),
    ]


def test_delay_fault_slows_the_next_request(userflow: UserflowEmulator) -> None:
    requests.post(
        userflow.url + "/__sandbox__/faults",
        json={"path_prefix": "/users", "delay_s": 0.3, "count": 1},
        timeout=5,
    )

    started = time.monotonic()
    response = _call(userflow, "GET", "/users")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_bad_fault_is_refused(userflow: UserflowEmulator) -> None:
    response = requests.post(
        userflow.url + "/__sandbox__/faults",
        json={"path_prefix": "users", "status": 500},
        timeout=5,
    )

    assert response.status_code == 400


def test_an_emulator_can_be_restarted_with_its_state() -> None:
    emulator = UserflowEmulator()
    with emulator:
        _call(emulator, "POST", "/users", {"id": "u1"})
    with emulator:  # same port is not promised; same state and working deliveries are
        fetched = _call(emulator, "GET", "/users/u1")
        assert not emulator.deliveries.stopped

    assert fetched.status_code == 200
