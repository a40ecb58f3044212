"""SegmentSource and SegmentSourceLookup: pure mapping/validation, then the provider's whole
lifecycle against the Segment emulator (every call spec-validated there)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from components.provider import unknown
from components.segment_api import HTTP_API_SOURCE_METADATA_ID, REGIONS
from components.segment_source import (
    SegmentSourceArgs,
    SegmentSourceLookupProvider,
    SegmentSourceProvider,
    create_source_body,
    pick_write_key,
    slug_problem,
    source_inputs,
    source_state,
    validate_source_inputs,
)
from tests.providers.conftest import (
    FAST_RETRIES,
    SEGMENT_TOKEN,
    SEGMENT_TOKEN_NOADMIN,
    Sandbox,
    configured,
    segment_api,
)

ARGS = SegmentSourceArgs(slug="userflow-staging", name="Userflow (staging)")


# -- pure ----------------------------------------------------------------------------------------


def test_slug_rules_say_what_to_fix() -> None:
    assert slug_problem("userflow-staging") is None
    assert slug_problem("app_1") is None
    assert slug_problem(unknown()) is None  # checked again once known
    problem = slug_problem("Userflow Staging")
    assert problem is not None and "lowercase letters, digits, hyphens or underscores" in problem
    assert slug_problem("-x") is not None


def test_validation_flags_empty_name_and_bad_slug() -> None:
    failures = dict(validate_source_inputs({"slug": "Bad!", "name": " ", "enabled": True}))
    assert set(failures) == {"slug", "name"}


def test_create_body_has_no_name_because_the_spec_has_none() -> None:
    inputs = {**source_inputs(ARGS)}
    assert create_source_body(inputs) == {
        "slug": "userflow-staging",
        "enabled": True,
        "metadataId": HTTP_API_SOURCE_METADATA_ID,
    }


def test_write_key_choice_keeps_the_one_in_use() -> None:
    assert pick_write_key(["a", "b"], "b") == "b"
    assert pick_write_key(["a", "b"], "gone") == "a"
    assert pick_write_key([], "gone") is None


# The outputs of a source in the state (test_state_from_a_source_object builds them).
OLDS = {
    "source_id": "src1",
    "slug": "userflow-staging",
    "name": "Userflow (staging)",
    "enabled": True,
    "metadata_id": HTTP_API_SOURCE_METADATA_ID,
    "write_key": "wk",
}


def test_state_from_a_source_object() -> None:
    source = {
        "id": "src1",
        "slug": "userflow-staging",
        "name": "Userflow (staging)",
        "enabled": True,
        "metadata": {"id": HTTP_API_SOURCE_METADATA_ID},
        "writeKeys": ["wk"],
    }
    assert source_state(source, "wk") == OLDS


@pytest.mark.parametrize(
    ("change", "changes", "replaces", "delete_first"),
    [
        ({}, False, [], True),
        ({"name": "Renamed"}, True, [], True),
        ({"enabled": False}, True, [], True),
        ({"slug": "userflow-prod"}, True, ["slug"], False),
        ({"metadata_id": "other"}, True, ["metadata_id"], True),
        ({"name": unknown()}, True, [], True),
    ],
)
def test_diff(
    change: dict[str, Any], changes: bool, replaces: list[str], delete_first: bool
) -> None:
    provider = SegmentSourceProvider()
    news = {**source_inputs(ARGS), **change}
    result = provider.diff("src1", OLDS, news)
    assert result.changes is changes
    assert result.replaces == replaces
    assert result.delete_before_replace is delete_first


def test_diff_asks_for_an_update_when_refresh_found_no_write_key() -> None:
    result = SegmentSourceProvider().diff("src1", {**OLDS, "write_key": None}, source_inputs(ARGS))
    assert result.changes is True and result.replaces == []


def test_check_says_how_to_set_a_missing_token_and_rejects_plain_http() -> None:
    provider = configured(SegmentSourceProvider(), segmentApiUrl="http://segment.example.com")
    reasons = [f.reason for f in provider.check({}, source_inputs(ARGS)).failures]
    assert any("pulumi config set --secret userflow-segment:segmentToken" in r for r in reasons)
    assert any("plain http" in r for r in reasons)


def test_check_without_configure_explains_itself() -> None:
    failures = SegmentSourceProvider().check({}, source_inputs(ARGS)).failures
    assert [f.property for f in failures] == ["config"]
    assert "configure" in failures[0].reason


def test_check_fills_defaults() -> None:
    provider = configured(SegmentSourceProvider(), segmentToken="t")
    result = provider.check({}, {"slug": "userflow-x", "name": "X"})
    assert result.failures == []
    assert result.inputs["enabled"] is True
    assert result.inputs["metadata_id"] == HTTP_API_SOURCE_METADATA_ID


# -- lifecycle against the emulator --------------------------------------------------------------


def provider_for(segment: Sandbox, token: str = SEGMENT_TOKEN) -> SegmentSourceProvider:
    return configured(
        SegmentSourceProvider(FAST_RETRIES), segmentApiUrl=segment.url, segmentToken=token
    )


def checked(provider: SegmentSourceProvider, args: SegmentSourceArgs) -> dict[str, Any]:
    result = provider.check({}, source_inputs(args))
    assert result.failures == []
    return result.inputs


def test_lifecycle(segment: Sandbox) -> None:
    provider = provider_for(segment)
    inputs = checked(provider, ARGS)

    # create
    created = provider.create(inputs)
    assert created.outs is not None
    [source] = segment.state()["sources"]
    assert source["id"] == created.id
    assert created.outs["name"] == "Userflow (staging)" == source["name"]
    assert created.outs["write_key"] in source["writeKeys"]

    # a second `up`: check + diff, nothing to do, and no API call at all
    calls = segment.api_calls()
    again = provider.check(created.outs, source_inputs(ARGS))
    assert provider.diff(created.id, created.outs, again.inputs).changes is False
    assert segment.api_calls() == calls

    # update
    renamed = {**inputs, "name": "Userflow (staging, renamed)"}
    diff = provider.diff(created.id, created.outs, renamed)
    assert diff.changes and diff.replaces == []
    updated = provider.update(created.id, created.outs, renamed)
    assert updated.outs is not None
    assert segment.state()["sources"][0]["name"] == "Userflow (staging, renamed)"
    assert updated.outs["write_key"] == created.outs["write_key"]

    # refresh after an out-of-band change: drift shows, the next up puts it back
    segment_api(
        segment, "PATCH", f"/sources/{created.id}", {"name": "someone else", "enabled": False}
    )
    read = provider.read(created.id, updated.outs)
    assert read.id == created.id and read.outs is not None
    assert read.outs["name"] == "someone else" and read.outs["enabled"] is False
    assert provider.diff(created.id, read.outs, renamed).changes is True
    provider.update(created.id, read.outs, renamed)
    assert segment.state()["sources"][0]["enabled"] is True

    # refresh after an out-of-band deletion: gone
    segment_api(segment, "DELETE", f"/sources/{created.id}")
    gone = provider.read(created.id, updated.outs)
    assert gone.id == "" and gone.outs == {}

    # destroy leaves nothing; deleting what is already gone is fine
    again_created = provider.create(inputs)
    provider.delete(again_created.id, again_created.outs or {})
    assert segment.state()["sources"] == []
    provider.delete(again_created.id, again_created.outs or {})


def test_interrupted_create_then_retry_leaves_exactly_one_source(segment: Sandbox) -> None:
    provider = provider_for(segment)
    inputs = checked(provider, ARGS)
    # The source gets created, then the follow-up PATCH (its name) keeps failing: `up` dies.
    segment.fault(
        method="PATCH", path_prefix="/sources/", status=500, count=FAST_RETRIES.max_attempts
    )
    with pytest.raises(Exception, match="update source"):
        provider.create(inputs)
    assert len(segment.state()["sources"]) == 1

    retried = provider.create(inputs)
    [source] = segment.state()["sources"]
    assert retried.id == source["id"]
    assert source["name"] == "Userflow (staging)"


def test_create_refuses_a_slug_taken_by_another_kind_of_source(segment: Sandbox) -> None:
    provider = provider_for(segment)
    inputs = {**checked(provider, ARGS), "metadata_id": "not-http-api"}
    segment_api(
        segment,
        "POST",
        "/sources",
        {"slug": "userflow-staging", "enabled": True, "metadataId": HTTP_API_SOURCE_METADATA_ID},
    )
    with pytest.raises(ValueError, match="already exists but is not an HTTP API source"):
        provider.create(inputs)


def test_token_without_source_admin_fails_with_what_to_fix(segment: Sandbox) -> None:
    provider = provider_for(segment, SEGMENT_TOKEN_NOADMIN)
    with pytest.raises(ValueError) as caught:
        provider.create(checked(provider, ARGS))
    message = str(caught.value)
    assert "Source Admin" in message and "userflow-segment:segmentToken" in message
    assert SEGMENT_TOKEN_NOADMIN not in message


def test_write_key_deleted_out_of_band_is_replaced_on_the_next_up(segment: Sandbox) -> None:
    provider = provider_for(segment)
    inputs = checked(provider, ARGS)
    created = provider.create(inputs)
    assert created.outs is not None
    old_key = created.outs["write_key"]
    segment_api(segment, "DELETE", f"/sources/{created.id}/writekey/{old_key}")

    read = provider.read(created.id, created.outs)
    assert read.outs is not None and read.outs["write_key"] is None
    assert provider.diff(created.id, read.outs, inputs).changes is True
    updated = provider.update(created.id, read.outs, inputs)
    assert updated.outs is not None
    new_key = updated.outs["write_key"]
    assert new_key and new_key != old_key
    assert segment.state()["sources"][0]["writeKeys"] == [new_key]


def test_429_storm_during_create(segment: Sandbox) -> None:
    provider = provider_for(segment)
    segment.fault(method="POST", path_prefix="/sources", status=429, count=4, retry_after=0.02)
    created = provider.create(checked(provider, ARGS))
    assert [s["id"] for s in segment.state()["sources"]] == [created.id]
    posts = [r["status"] for r in segment.requests() if r["method"] == "POST"]
    assert posts == [429, 429, 429, 429, 200]


EU_API_URL = REGIONS["eu"].api_url


class _EuRouter(HTTPAdapter):
    """Stands in for DNS: calls to the EU host reach the emulator, and are recorded."""

    def __init__(self, emulator_url: str, seen: list[str]) -> None:
        super().__init__()
        self.emulator_url = emulator_url
        self.seen = seen

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        assert request.url is not None
        self.seen.append(request.url)
        request.url = request.url.replace(EU_API_URL, self.emulator_url)
        return super().send(request, *args, **kwargs)


def test_segment_region_eu_sends_every_call_to_the_eu_host(
    segment: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a stack that says only `segmentRegion: eu` (no explicit segmentApiUrl)
    seen: list[str] = []
    original_session = requests.Session

    def routed_session() -> requests.Session:
        session = original_session()
        session.mount(EU_API_URL, _EuRouter(segment.url, seen))
        return session

    monkeypatch.setattr("components.api_http.requests.Session", routed_session)
    provider = configured(
        SegmentSourceProvider(FAST_RETRIES), segmentRegion="eu", segmentToken=SEGMENT_TOKEN
    )
    created = provider.create(checked(provider, ARGS))
    provider.delete(created.id, created.outs or {})
    assert seen and all(url.startswith(EU_API_URL + "/sources") for url in seen)
    assert segment.state()["sources"] == []


# -- SegmentSourceLookup -------------------------------------------------------------------------


def test_lookup_finds_by_slug_and_never_deletes(segment: Sandbox) -> None:
    app = segment_api(
        segment,
        "POST",
        "/sources",
        {"slug": "app-staging", "enabled": True, "metadataId": HTTP_API_SOURCE_METADATA_ID},
    )["data"]["source"]
    provider = configured(
        SegmentSourceLookupProvider(FAST_RETRIES),
        segmentApiUrl=segment.url,
        segmentToken=SEGMENT_TOKEN,
    )
    found = provider.create({"slug": "app-staging", "source_id": None})
    assert found.id == app["id"] and found.outs == {"slug": "app-staging", "source_id": app["id"]}
    assert provider.diff(found.id, found.outs, {"slug": "app-staging"}).changes is False
    assert provider.diff(found.id, found.outs, {"slug": "app-prod"}).replaces == ["slug"]
    provider.delete(found.id, found.outs)
    assert [s["id"] for s in segment.state()["sources"]] == [app["id"]]
    with pytest.raises(ValueError, match="no Segment source with slug 'missing'"):
        provider.create({"slug": "missing"})

    read = provider.read(found.id, found.outs)
    assert read.id == app["id"] and read.outs == found.outs
    segment_api(segment, "DELETE", f"/sources/{app['id']}")  # the app's team removes it
    gone = provider.read(found.id, found.outs)
    assert gone.id == "" and gone.outs == {}


def test_lookup_check_validates_the_slug_and_the_config() -> None:
    provider = configured(SegmentSourceLookupProvider(), segmentToken=SEGMENT_TOKEN)
    bad = provider.check({}, {"slug": "Not A Slug", "source_id": None})
    assert [f.property for f in bad.failures] == ["slug"]
    good = provider.check({}, {"slug": "app-staging", "source_id": None})
    assert good.inputs == {"slug": "app-staging", "source_id": None} and good.failures == []
    unconfigured = SegmentSourceLookupProvider().check({}, {"slug": "app-staging"})
    assert [f.property for f in unconfigured.failures] == ["config"]


def test_create_that_meets_its_own_slug_adopts_instead_of_failing(
    segment: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The source appears between the adoption lookup and the POST (e.g. a retried POST whose
    # first attempt was carried out): Segment answers 422 for the slug, and create adopts it.
    provider = provider_for(segment)
    inputs = checked(provider, ARGS)
    existing = segment_api(
        segment,
        "POST",
        "/sources",
        {"slug": "userflow-staging", "enabled": True, "metadataId": HTTP_API_SOURCE_METADATA_ID},
    )["data"]["source"]
    client = provider.client()
    real_find = client.find_source_by_slug
    lookups: list[str] = []

    def first_lookup_misses(slug: str) -> dict[str, Any] | None:
        lookups.append(slug)
        return None if len(lookups) == 1 else real_find(slug)

    monkeypatch.setattr(client, "find_source_by_slug", first_lookup_misses)
    created = provider.create(inputs)
    assert created.id == existing["id"]
    [source] = segment.state()["sources"]
    assert source["name"] == "Userflow (staging)"
    assert [r["status"] for r in segment.requests() if r["method"] == "POST"] == [200, 422]
    assert lookups == ["userflow-staging", "userflow-staging"]


def test_one_provider_serves_many_threads(segment: Sandbox) -> None:
    # The engine caches one provider per process and calls it from a thread pool.
    provider = provider_for(segment)
    created = provider.create(checked(provider, ARGS))
    with ThreadPoolExecutor(max_workers=8) as pool:
        reads = list(pool.map(lambda _: provider.read(created.id, created.outs or {}), range(24)))
        clients = set(pool.map(lambda _: id(provider.client()), range(24)))
    assert all(r.outs == created.outs for r in reads)
    assert len(clients) == 1
