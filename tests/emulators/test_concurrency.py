"""Both emulators are hit from several threads at once (providers run in parallel, deliveries
run in the background): no lost writes, no duplicates, no torn state."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from sandbox.segment import SegmentEmulator
from sandbox.userflow import UserflowEmulator
from tests.emulators.helpers import HTTP_API_SOURCE, call, userflow_headers


def test_parallel_source_creates_with_one_slug_make_exactly_one(segment: SegmentEmulator) -> None:
    body = {"slug": "userflow-staging", "enabled": True, "metadataId": HTTP_API_SOURCE}

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(lambda _: call(segment.url, "POST", "/sources", body).status_code, range(16))
        )

    assert sorted(statuses) == [200] + [422] * 15
    assert len(segment.state()["sources"]) == 1


def test_parallel_creates_with_distinct_slugs_all_land(segment: SegmentEmulator) -> None:
    def create(index: int) -> str:
        body = {"slug": f"source-{index}", "enabled": True, "metadataId": HTTP_API_SOURCE}
        response = call(segment.url, "POST", "/sources", body)
        assert response.status_code == 200
        source_id: str = response.json()["data"]["source"]["id"]
        return source_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(create, range(24)))

    assert len(set(ids)) == 24
    assert {s["id"] for s in segment.state()["sources"]} == set(ids)


def test_parallel_attribute_increments_are_not_lost(userflow: UserflowEmulator) -> None:
    def increment(_: int) -> int:
        return requests.post(
            userflow.url + "/users",
            json={"id": "u1", "attributes": {"count": {"add": 1}}},
            headers=userflow_headers(),
            timeout=5,
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(increment, range(40)))

    assert statuses == [200] * 40
    [user] = userflow.state()["users"]
    assert user["attributes"]["count"] == 40
