"""Segment emulator, Public API: the contract a dynamic provider relies on, errors included."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from sandbox.segment import NOADMIN_TOKEN, WORKSPACE_ID, SegmentEmulator, handlers
from sandbox.segment.models import render_source
from tests.emulators.helpers import (
    HTTP_API_SOURCE,
    SEND_ACTION,
    V1,
    V1ALPHA,
    WEBHOOKS_ACTIONS,
    call,
    create_destination,
    create_source,
    create_subscription,
    post_source,
    post_subscription,
)


def _errors(response: requests.Response) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = response.json()["errors"]
    return errors


# -- sources ----------------------------------------------------------------------------------


def test_create_source_returns_the_spec_shape_with_a_write_key(segment: SegmentEmulator) -> None:
    response = post_source(segment.url, "userflow-staging")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == V1
    source = response.json()["data"]["source"]
    assert source["slug"] == "userflow-staging"
    assert source["name"] == "userflow-staging"
    assert source["workspaceId"] == WORKSPACE_ID
    assert source["metadata"]["id"] == HTTP_API_SOURCE
    assert len(source["writeKeys"]) == 1 and len(source["writeKeys"][0]) == 32
    assert segment.state()["sources"][0]["id"] == source["id"]


def test_token_without_source_admin_sees_no_write_keys(segment: SegmentEmulator) -> None:
    created = post_source(segment.url, "userflow-local", token=NOADMIN_TOKEN)
    fetched = call(
        segment.url,
        "GET",
        f"/sources/{created.json()['data']['source']['id']}",
        token=NOADMIN_TOKEN,
    )

    assert created.json()["data"]["source"]["writeKeys"] == []
    assert fetched.json()["data"]["source"]["writeKeys"] == []
    # The key exists all the same: an admin token sees it.
    admin = call(segment.url, "GET", f"/sources/{created.json()['data']['source']['id']}")
    assert len(admin.json()["data"]["source"]["writeKeys"]) == 1


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic abc"])
def test_public_api_needs_a_known_bearer_token(
    segment: SegmentEmulator, authorization: str | None
) -> None:
    headers = {"Accept": V1}
    if authorization:
        headers["Authorization"] = authorization

    response = requests.get(
        f"{segment.url}/sources", params={"pagination[count]": 10}, headers=headers, timeout=5
    )

    assert response.status_code == 401
    assert _errors(response)[0]["type"] == "Unauthorized"


def test_extra_tokens_are_accepted_with_their_permission() -> None:
    with SegmentEmulator(tokens={"ci-admin": True, "ci-plain": False}) as emulator:
        admin = post_source(emulator.url, "a", token="ci-admin")
        plain = call(
            emulator.url,
            "GET",
            f"/sources/{admin.json()['data']['source']['id']}",
            token="ci-plain",
        )

    assert admin.status_code == 200 and admin.json()["data"]["source"]["writeKeys"]
    assert plain.status_code == 200 and plain.json()["data"]["source"]["writeKeys"] == []


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"slug": "x", "enabled": "yes", "metadataId": HTTP_API_SOURCE}, "enabled"),
        ({"enabled": True, "metadataId": HTTP_API_SOURCE}, "slug"),
        ({"slug": "x", "enabled": True}, "metadataId"),
    ],
)
def test_a_request_violating_the_spec_gets_400_naming_the_violation(
    segment: SegmentEmulator, body: dict[str, Any], named: str
) -> None:
    response = call(segment.url, "POST", "/sources", body)

    assert response.status_code == 400
    message = _errors(response)[0]["message"]
    assert "violates the Segment Public API spec" in message
    assert named in message
    assert segment.state()["sources"] == []


def test_list_without_pagination_is_a_spec_violation(segment: SegmentEmulator) -> None:
    response = call(segment.url, "GET", "/sources")

    assert response.status_code == 400
    assert "pagination" in _errors(response)[0]["message"]


def test_unsupported_media_type_is_refused(segment: SegmentEmulator) -> None:
    response = requests.post(
        f"{segment.url}/sources",
        data="slug=x",
        headers={"Authorization": "Bearer sandbox-segment-token", "Content-Type": "text/plain"},
        timeout=5,
    )

    assert response.status_code == 400
    assert "Content-Type" in _errors(response)[0]["message"]


def test_plain_json_is_accepted_like_the_official_sdks_send_it(segment: SegmentEmulator) -> None:
    response = post_source(segment.url, "plain", enabled=False, media="application/json")

    assert response.status_code == 200
    assert response.json()["data"]["source"]["enabled"] is False


def test_duplicate_slug_and_unknown_metadata_are_validation_failures(
    segment: SegmentEmulator,
) -> None:
    create_source(segment.url, "userflow-staging")

    duplicate = post_source(segment.url, "userflow-staging")
    unknown = post_source(segment.url, "other", metadata_id="nope")
    bad_slug = post_source(segment.url, "Not A Slug")

    assert duplicate.status_code == 422
    assert _errors(duplicate)[0] == {
        "type": "ValidationFailure",
        "message": "a source with slug 'userflow-staging' already exists",
        "field": "slug",
    }
    assert unknown.status_code == 422 and _errors(unknown)[0]["field"] == "metadataId"
    assert bad_slug.status_code == 422 and _errors(bad_slug)[0]["field"] == "slug"
    assert len(segment.state()["sources"]) == 1


def test_missing_objects_are_404_not_found(segment: SegmentEmulator) -> None:
    for method, path in [
        ("GET", "/sources/missing"),
        ("PATCH", "/sources/missing"),
        ("DELETE", "/sources/missing"),
        ("GET", "/destinations/missing"),
        ("DELETE", "/destinations/missing"),
    ]:
        response = call(segment.url, method, path, {} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path)
        assert _errors(response)[0]["type"] == "NotFound"


def test_source_patch_merges_settings_and_null_removes(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    call(segment.url, "PATCH", f"/sources/{source['id']}", {"settings": {"a": "1", "b": "2"}})

    response = call(
        segment.url,
        "PATCH",
        f"/sources/{source['id']}",
        {"name": "App", "enabled": False, "settings": {"a": None, "c": "3"}},
    )

    updated = response.json()["data"]["source"]
    assert updated["settings"] == {"b": "2", "c": "3"}
    assert updated["name"] == "App" and updated["enabled"] is False
    assert updated["slug"] == "app"


def test_source_slug_change_keeps_uniqueness(segment: SegmentEmulator) -> None:
    first = create_source(segment.url, "one")
    create_source(segment.url, "two")

    clash = call(segment.url, "PATCH", f"/sources/{first['id']}", {"slug": "two"})
    rename = call(segment.url, "PATCH", f"/sources/{first['id']}", {"slug": "uno"})

    assert clash.status_code == 422
    assert rename.json()["data"]["source"]["slug"] == "uno"


def test_pagination_walks_every_source_once(segment: SegmentEmulator) -> None:
    created = [create_source(segment.url, f"source-{i}")["id"] for i in range(5)]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while pages < 10:  # bounded: 5 items at 2 per page need 3 pages
        params: dict[str, Any] = {"pagination[count]": 2}
        if cursor:
            params["pagination[cursor]"] = cursor
        page = call(segment.url, "GET", "/sources", params=params).json()["data"]
        pages += 1
        seen += [s["id"] for s in page["sources"]]
        assert page["pagination"]["totalEntries"] == 5
        assert (page["pagination"]["previous"] is None) == (cursor is None)
        cursor = page["pagination"]["next"]
        if cursor is None:
            break

    assert pages == 3
    assert seen == created


@pytest.mark.parametrize(
    "params",
    [
        {"pagination[count]": 0},
        {"pagination[count]": 201},
        {"pagination[count]": 2, "pagination[cursor]": "garbage!"},
    ],
)
def test_bad_pagination_is_a_validation_failure(
    segment: SegmentEmulator, params: dict[str, Any]
) -> None:
    create_source(segment.url, "only")

    response = call(segment.url, "GET", "/sources", params=params)

    assert response.status_code == 422
    assert _errors(response)[0]["field"].startswith("pagination.")


def test_delete_source_cascades_to_its_destinations(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    destination = create_destination(segment.url, source["id"])
    create_subscription(segment.url, destination["id"], "http://127.0.0.1:9/x")

    response = call(segment.url, "DELETE", f"/sources/{source['id']}")

    assert response.json() == {"data": {"status": "SUCCESS"}}
    state = segment.state()
    assert state["sources"] == state["destinations"] == state["subscriptions"] == []


def test_wrong_method_on_a_known_path_is_405(segment: SegmentEmulator) -> None:
    response = call(segment.url, "PUT", "/sources", {})

    assert response.status_code == 405


# -- write keys (alpha, outside the spec) ---------------------------------------------------


def test_write_keys_can_be_added_and_removed(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "userflow-staging")
    original = source["writeKeys"][0]

    added = call(segment.url, "POST", f"/sources/{source['id']}/writekey", media=V1ALPHA)
    new_key = added.json()["data"]["writeKey"]
    removed = call(segment.url, "DELETE", f"/sources/{source['id']}/writekey/{original}")
    again = call(segment.url, "DELETE", f"/sources/{source['id']}/writekey/{original}")

    assert added.status_code == 200
    assert added.json()["data"]["source"]["writeKeys"] == [original, new_key]
    assert removed.json() == {"data": {"status": "SUCCESS"}}
    assert again.status_code == 404
    assert segment.state()["sources"][0]["writeKeys"] == [new_key]


def test_write_key_endpoints_need_source_admin(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "userflow-staging")

    response = call(segment.url, "POST", f"/sources/{source['id']}/writekey", token=NOADMIN_TOKEN)

    assert response.status_code == 403
    assert "source admin" in _errors(response)[0]["message"]


# -- destinations ---------------------------------------------------------------------------


def test_destination_secret_is_masked_on_every_read(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")

    destination = create_destination(segment.url, source["id"], secret="topsecret")
    fetched = call(segment.url, "GET", f"/destinations/{destination['id']}").json()["data"]
    listed = call(segment.url, "GET", "/destinations", params={"pagination[count]": 10})

    assert destination["settings"]["sharedSecret"] == "•" * len("topsecret")
    assert fetched["destination"]["settings"]["sharedSecret"] == "•" * len("topsecret")
    assert listed.json()["data"]["destinations"][0]["settings"]["sharedSecret"].count("•") == 9
    assert destination["metadata"]["id"] == WEBHOOKS_ACTIONS
    assert destination["sourceId"] == source["id"]
    # The emulator keeps the real value: deliveries are signed with it.
    assert segment.state()["destinations"][0]["settings"]["sharedSecret"] == "topsecret"


def test_destination_patch_merges_and_null_removes_the_secret(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    destination = create_destination(segment.url, source["id"], secret="old")

    rotated = call(
        segment.url,
        "PATCH",
        f"/destinations/{destination['id']}",
        {"settings": {"sharedSecret": "newer"}, "enabled": False},
    )
    removed = call(
        segment.url,
        "PATCH",
        f"/destinations/{destination['id']}",
        {"settings": {"sharedSecret": None}},
    )

    assert rotated.json()["data"]["destination"]["enabled"] is False
    assert rotated.json()["data"]["destination"]["settings"] == {"sharedSecret": "•••••"}
    assert removed.json()["data"]["destination"]["settings"] == {}
    assert segment.state()["destinations"][0]["settings"] == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"metadataId": "unknown", "settings": {}}, "metadataId"),
        ({"metadataId": WEBHOOKS_ACTIONS, "settings": {"apiKey": "x"}}, "settings.apiKey"),
        ({"metadataId": WEBHOOKS_ACTIONS, "settings": {}, "sourceId": "missing"}, "sourceId"),
    ],
)
def test_destination_validation_failures(
    segment: SegmentEmulator, body: dict[str, Any], field: str
) -> None:
    source = create_source(segment.url, "app")

    response = call(segment.url, "POST", "/destinations", {"sourceId": source["id"], **body})

    assert response.status_code == 422
    assert _errors(response)[0]["field"] == field


def test_destination_is_created_disabled_unless_asked(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")

    response = call(
        segment.url,
        "POST",
        "/destinations",
        {"sourceId": source["id"], "metadataId": WEBHOOKS_ACTIONS, "settings": {}},
    )

    assert response.json()["data"]["destination"]["enabled"] is False
    assert response.json()["data"]["destination"]["name"] == "Webhooks (Actions)"


# -- subscriptions (alpha) -------------------------------------------------------------------


def test_subscription_lifecycle_speaks_the_alpha_media_type(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    destination = create_destination(segment.url, source["id"])
    base = f"/destinations/{destination['id']}/subscriptions"

    created = create_subscription(
        segment.url,
        destination["id"],
        "https://bridge.example/segment",
        enable_batching=True,
        batch_size=10,
    )
    fetched = call(segment.url, "GET", f"{base}/{created['id']}", media=V1ALPHA)
    listed = call(segment.url, "GET", base, media=V1ALPHA, params={"pagination[count]": 10})
    patched = call(
        segment.url,
        "PATCH",
        f"{base}/{created['id']}",
        {"input": {"trigger": 'type = "track"', "settings": {"batch_size": None}}},
        media=V1ALPHA,
    )
    deleted = call(segment.url, "DELETE", f"{base}/{created['id']}", media=V1ALPHA)

    assert created["actionId"] == SEND_ACTION and created["actionSlug"] == "send"
    assert fetched.headers["Content-Type"] == V1ALPHA
    assert fetched.json()["data"]["subscription"]["settings"]["batch_size"] == 10
    assert [s["id"] for s in listed.json()["data"]["subscriptions"]] == [created["id"]]
    subscription = patched.json()["data"]["subscription"]
    assert subscription["trigger"] == 'type = "track"'
    assert "batch_size" not in subscription["settings"]
    assert subscription["settings"]["enable_batching"] is True
    assert deleted.json() == {"data": {"status": "SUCCESS"}}
    assert segment.state()["subscriptions"] == []


def test_subscription_request_in_v1_media_type_violates_the_spec(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    destination = create_destination(segment.url, source["id"])

    response = call(
        segment.url,
        "POST",
        f"/destinations/{destination['id']}/subscriptions",
        {"name": "n", "actionId": SEND_ACTION, "trigger": 'type = "track"', "enabled": True},
        media=V1,
    )

    assert response.status_code == 400
    assert V1ALPHA in _errors(response)[0]["message"]


@pytest.mark.parametrize(
    ("trigger", "settings", "field"),
    [
        ('type = "track" or', {}, "trigger"),
        ('properties.plan = "pro"', {}, "trigger"),
        ('type = "track"', {"method": "GET"}, "settings.method"),
        ('type = "track"', {"url": "ftp://x"}, "settings.url"),
        ('type = "track"', {"data": {"userId": {"@path": "$.userId"}}}, "settings.data"),
        ('type = "track"', {"batch_size": 0}, "settings.batch_size"),
    ],
)
def test_subscription_validation_failures(
    segment: SegmentEmulator, trigger: str, settings: dict[str, Any], field: str
) -> None:
    source = create_source(segment.url, "app")
    destination = create_destination(segment.url, source["id"])

    response = post_subscription(
        segment.url, destination["id"], "https://b.example/segment", trigger, settings=settings
    )

    assert response.status_code == 422
    assert _errors(response)[0]["field"] == field


def test_subscription_of_another_destination_is_not_found(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    first = create_destination(segment.url, source["id"])
    second = create_destination(segment.url, source["id"])
    subscription = create_subscription(segment.url, first["id"], "https://b.example/segment")

    response = call(
        segment.url,
        "GET",
        f"/destinations/{second['id']}/subscriptions/{subscription['id']}",
        media=V1ALPHA,
    )

    assert response.status_code == 404


# -- catalog --------------------------------------------------------------------------------


def test_catalog_entries_for_the_ids_this_project_uses(segment: SegmentEmulator) -> None:
    http_api = call(segment.url, "GET", f"/catalog/sources/{HTTP_API_SOURCE}")
    webhooks = call(segment.url, "GET", f"/catalog/destinations/{WEBHOOKS_ACTIONS}")
    missing = call(segment.url, "GET", "/catalog/destinations/54521fdc25e721e32a72ef04")

    assert http_api.json()["data"]["sourceMetadata"]["name"] == "HTTP API"
    metadata = webhooks.json()["data"]["destinationMetadata"]
    assert [o["name"] for o in metadata["options"]] == ["sharedSecret"]
    send = next(a for a in metadata["actions"] if a["id"] == SEND_ACTION)
    fields = {f["fieldKey"]: f for f in send["fields"]}
    assert set(fields) == {"url", "method", "headers", "data", "enable_batching", "batch_size"}
    assert fields["url"]["required"] and fields["method"]["required"]
    assert [c["value"] for c in fields["method"]["choices"]] == ["POST", "PUT", "PATCH"]
    assert missing.status_code == 404


# -- faults, rate limits, request log, response validation ------------------------------------


def test_injected_faults_use_the_api_error_envelope(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    faults = [
        {
            "path_prefix": "/sources/",
            "method": "GET",
            "status": 429,
            "count": 2,
            "retry_after": 0.25,
        },
        {"path_prefix": "/destinations", "status": 422, "count": 1},
    ]
    assert requests.post(f"{segment.url}/__sandbox__/faults", json=faults, timeout=5).ok

    first = call(segment.url, "GET", f"/sources/{source['id']}")
    second = call(segment.url, "GET", f"/sources/{source['id']}")
    third = call(segment.url, "GET", f"/sources/{source['id']}")
    failing = call(segment.url, "GET", "/destinations", params={"pagination[count]": 1})

    assert first.status_code == second.status_code == 429
    assert _errors(first)[0]["type"] == "RateLimited"
    assert _errors(first)[0]["data"] == {"msBeforeNext": 250}
    assert third.status_code == 200
    assert failing.status_code == 422 and _errors(failing)[0]["type"] == "ValidationFailure"


def test_rate_limit_headers_and_a_real_429(segment: SegmentEmulator) -> None:
    with SegmentEmulator(rate_limit_per_s=2) as limited:
        responses = [
            call(limited.url, "GET", "/catalog/sources/" + HTTP_API_SOURCE) for _ in range(3)
        ]
        violations = limited.state()["spec_violations"]

    assert responses[0].headers["X-RateLimit-Remaining"] == "1"
    assert responses[1].headers["X-RateLimit-Remaining"] == "0"
    assert int(responses[0].headers["X-RateLimit-Reset"]) > 1_600_000_000_000

    assert responses[2].status_code == 429
    wait_ms = _errors(responses[2])[0]["data"]["msBeforeNext"]
    assert 0 < wait_ms <= 1000
    assert violations == []  # the 429 envelope itself passed the spec check


def test_request_log_lists_public_api_calls_and_reset_clears_everything(
    segment: SegmentEmulator,
) -> None:
    create_source(segment.url, "app")
    call(segment.url, "GET", "/sources/missing")
    requests.post(f"{segment.url}/v1/track", json={}, timeout=5)

    public = requests.get(
        f"{segment.url}/__sandbox__/requests", params={"kind": "public"}, timeout=5
    ).json()["requests"]
    everything = requests.get(f"{segment.url}/__sandbox__/requests", timeout=5).json()["requests"]
    requests.post(f"{segment.url}/__sandbox__/reset", timeout=5)
    after = requests.get(f"{segment.url}/__sandbox__/state", timeout=5).json()

    assert [(r["method"], r["path"], r["status"]) for r in public] == [
        ("POST", "/sources", 200),
        ("GET", "/sources/missing", 404),
    ]
    assert [r["kind"] for r in everything] == ["public", "public", "tracking"]
    assert after["sources"] == [] and after["dropped"] == []
    assert requests.get(f"{segment.url}/__sandbox__/requests", timeout=5).json() == {"requests": []}


def test_a_response_violating_the_spec_is_a_loud_emulator_bug(
    segment: SegmentEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = create_source(segment.url, "app")
    original = render_source

    def broken(stored: dict[str, Any], caller: Any) -> dict[str, Any]:
        rendered = original(stored, caller)
        del rendered["workspaceId"]  # a required field of SourceV1
        return rendered

    monkeypatch.setattr(handlers, "render_source", broken)

    response = call(segment.url, "GET", f"/sources/{source['id']}")

    assert response.status_code == 500
    assert "workspaceId" in json.dumps(response.json()["violations"])
    assert segment.state()["spec_violations"][0]["path"] == f"/sources/{source['id']}"
    segment.spec_violations.clear()  # expected here; the fixture checks every other test


def test_state_has_no_spec_violations_after_a_full_lifecycle(segment: SegmentEmulator) -> None:
    source = create_source(segment.url, "app")
    destination = create_destination(segment.url, source["id"])
    subscription = create_subscription(segment.url, destination["id"], "https://b.example/s")
    base = f"/destinations/{destination['id']}/subscriptions"
    call(segment.url, "GET", base, media=V1ALPHA, params={"pagination[count]": 1})
    call(segment.url, "DELETE", f"{base}/{subscription['id']}", media=V1ALPHA)
    call(segment.url, "DELETE", f"/destinations/{destination['id']}")
    call(segment.url, "GET", f"/destinations/{destination['id']}")
    call(segment.url, "DELETE", f"/sources/{source['id']}")

    assert segment.state()["spec_violations"] == []


def test_connected_destinations_lists_only_that_source(segment: SegmentEmulator) -> None:
    app = create_source(segment.url, "app")
    other = create_source(segment.url, "other")
    mine = create_destination(segment.url, app["id"])
    create_destination(segment.url, other["id"])

    response = call(
        segment.url,
        "GET",
        f"/sources/{app['id']}/connected-destinations",
        params={"pagination[count]": 10},
    )

    assert [d["id"] for d in response.json()["data"]["destinations"]] == [mine["id"]]
    assert response.json()["data"]["pagination"]["totalEntries"] == 1


def test_same_seed_gives_the_same_ids_whatever_the_traffic() -> None:
    def run(seed: int, with_traffic: bool) -> list[str]:
        with SegmentEmulator(seed=seed) as emulator:
            source = create_source(emulator.url, "app")
            if with_traffic:  # tracking calls and deliveries use their own id streams
                for index in range(3):
                    requests.post(
                        f"{emulator.url}/v1/track",
                        json={"userId": "u", "event": f"e{index}"},
                        auth=(source["writeKeys"][0], ""),
                        timeout=5,
                    )
            destination = create_destination(emulator.url, source["id"])
            return [source["id"], source["writeKeys"][0], destination["id"]]

    assert run(11, with_traffic=False) == run(11, with_traffic=True)
    assert run(11, with_traffic=False) != run(12, with_traffic=False)
