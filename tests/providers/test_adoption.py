"""Adoption of a hand-made setup (components/adoption.py): each provider's create takes over
the object a config key names, by id or by name, in place; a missing or ambiguous name is an
error naming the key; destroy releases what was adopted. Against the emulators."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.adoption import (
    DEFAULT_ON_DESTROY,
    Adopt,
    AdoptionError,
    pick_one,
    releases_on_destroy,
)
from components.config import (
    OPTIONAL_SECRET_KEYS,
    SECRET_KEYS,
    ConfigError,
    StackConfig,
    parse_config,
)
from components.config_keys import PROJECT_ROOT, declarations
from components.segment_api import (
    HTTP_API_SOURCE_METADATA_ID,
    WEBHOOKS_ACTIONS_METADATA_ID,
    WEBHOOKS_SEND_ACTION_ID,
)
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
    userflow_api,
)

BRIDGE = "http://127.0.0.1:8787"
OLD_RECEIVER = "https://hand-made.example.com"
HAND_SECRET = "hand-made-shared-secret"
TRIGGER = 'type = "identify" or type = "track" or type = "group"'
NS = "userflow-segment:"


# -- pure ----------------------------------------------------------------------------------------


def test_an_adoption_names_its_object_by_id_or_by_name_not_both() -> None:
    with pytest.raises(ValueError, match="k: give the object's id or its name"):
        Adopt(key="k", id="a", name="b")
    with pytest.raises(ValueError, match="k: give"):
        Adopt(key="k")


def test_pick_one_refuses_none_and_several_naming_the_key() -> None:
    adopt = Adopt(key=f"{NS}adoptDestinationName", name="Userflow")

    def pick(*objects: dict[str, str]) -> dict[str, Any]:
        return pick_one(adopt, "destination", objects, lambda o: o.get("name"), "Ours")

    assert pick({"id": "d1", "name": "Userflow"}, {"id": "d9", "name": "Else"})["id"] == "d1"
    # an adoption interrupted after the rename, before the state was saved: found again
    assert pick({"id": "d1", "name": "Ours"})["id"] == "d1"
    with pytest.raises(AdoptionError, match=f"config {NS}adoptDestinationName: no destination"):
        pick({"id": "d9", "name": "Else"})
    with pytest.raises(AdoptionError, match=r"2 destinations are named 'Userflow' \(d1, d2\)"):
        pick({"id": "d2", "name": "Userflow"}, {"id": "d1", "name": "Userflow"})
    with pytest.raises(AdoptionError, match=r"'Userflow' or 'Ours' \(the stack's own\)"):
        pick({"id": "d2", "name": "Userflow"}, {"id": "d1", "name": "Ours"})


@pytest.mark.parametrize(
    ("props", "policy", "released"),
    [
        ({"adopted": True}, None, True),  # the default is release
        ({"adopted": True}, "release", True),
        ({"adopted": True}, "delete", False),
        ({}, None, False),  # created by the stack: deleted as ever
        ({"adopted": False}, "release", False),
    ],
)
def test_what_destroy_does(props: dict[str, Any], policy: str | None, released: bool) -> None:
    assert releases_on_destroy(props, policy) is released


# -- the config keys ---------------------------------------------------------------------------

BASE = {"environment": "staging", "hosting": "aws", "segmentAppSourceSlug": "app-staging"}
SHARED = OPTIONAL_SECRET_KEYS[0]


def parsed(raw: dict[str, str], secret_keys: tuple[str, ...] = (),
           plaintext: frozenset[str] = frozenset()) -> StackConfig:
    values = {key: pulumi.Output.secret(f"value-of-{key}") for key in (*SECRET_KEYS,
                                                                      *secret_keys)}
    return parse_config({**BASE, **raw}, "staging", values, "eu-central-1",
                        project_root=PROJECT_ROOT, plaintext_keys=plaintext)


def problems(raw: dict[str, str], secret_keys: tuple[str, ...] = (),
             plaintext: frozenset[str] = frozenset()) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parsed(raw, secret_keys, plaintext)
    return {p.key: p.allowed for p in caught.value.problems}


def test_no_adoption_by_default_and_release_on_destroy() -> None:
    adoption = parsed({}).adoption
    assert (adoption.userflow_source, adoption.destination, adoption.userflow_webhook) == (
        None, None, None)
    assert adoption.on_destroy == DEFAULT_ON_DESTROY == declarations()["adoptedOnDestroy"].default


def test_adoption_keys_become_adopts_naming_their_key() -> None:
    adoption = parsed({"adoptUserflowSourceSlug": "userflow-events",
                       "adoptDestinationId": "dest1",
                       "adoptUserflowWebhookUrl": "https://old.example.com/h",
                       "adoptedOnDestroy": "delete"}, (SHARED,)).adoption
    assert adoption.userflow_source == Adopt(key=f"{NS}adoptUserflowSourceSlug",
                                             name="userflow-events")
    assert adoption.destination == Adopt(key=f"{NS}adoptDestinationId", id="dest1")
    assert adoption.userflow_webhook == Adopt(key=f"{NS}adoptUserflowWebhookUrl",
                                              name="https://old.example.com/h")
    assert adoption.destination_shared_secret is not None and adoption.on_destroy == "delete"


def test_bad_adoption_keys_are_each_named() -> None:
    found = problems({"adoptDestinationId": "d1", "adoptDestinationName": "Userflow",
                      "adoptUserflowSourceSlug": "Not A Slug",
                      "adoptUserflowWebhookId": "w1", "adoptUserflowWebhookUrl": "https://x",
                      "adoptedOnDestroy": "keep"})
    assert set(found) == {"adoptDestinationName", "adoptUserflowSourceSlug",
                          "adoptUserflowWebhookUrl", "adoptedOnDestroy", SHARED}
    assert "must be unset when adoptDestinationId is set" in found["adoptDestinationName"]
    assert "is required when adopting a destination" in found[SHARED]
    assert "release, delete" in found["adoptedOnDestroy"]


def test_the_shared_secret_only_with_a_destination_and_only_encrypted() -> None:
    assert "no destination is adopted" in problems({}, (SHARED,))[SHARED]
    plaintext = problems({"adoptDestinationName": "Userflow"}, (SHARED,), frozenset({SHARED}))
    assert "must be encrypted" in plaintext[SHARED]


# -- the hand-made setup, made through the APIs as a person in the web apps would -------------


def hand_made_source(segment: Sandbox, slug: str = "userflow-events") -> dict[str, Any]:
    body = {"slug": slug, "enabled": True, "metadataId": HTTP_API_SOURCE_METADATA_ID}
    source: dict[str, Any] = segment_api(segment, "POST", "/sources", body)["data"]["source"]
    return source


def hand_made_destination(
    segment: Sandbox, source_id: str, name: str = "Userflow (by hand)", sends: int = 1
) -> str:
    body = {"sourceId": source_id, "metadataId": WEBHOOKS_ACTIONS_METADATA_ID, "name": name,
            "enabled": True, "settings": {"sharedSecret": HAND_SECRET}}
    destination_id: str = segment_api(segment, "POST", "/destinations", body)["data"][
        "destination"]["id"]
    for i in range(sends):
        segment_api(segment, "POST", f"/destinations/{destination_id}/subscriptions", {
            "name": f"Send to Userflow {i}", "actionId": WEBHOOKS_SEND_ACTION_ID,
            "trigger": TRIGGER, "enabled": True,
            "settings": {"url": f"{OLD_RECEIVER}/segment", "method": "POST"}})
    return destination_id


def hand_made_webhook(userflow: Sandbox, url: str = f"{OLD_RECEIVER}/userflow") -> dict[str, Any]:
    body = {"api_version": "2020-01-03", "url": url, "topics": ["event.tracked.flow_started"]}
    created: dict[str, Any] = userflow_api(userflow, "POST", "/webhook_subscriptions", body)
    return created


def segment_provider(cls: Any, segment: Sandbox, **config: str) -> Any:
    return configured(cls(FAST_RETRIES), segmentApiUrl=segment.url, segmentToken=SEGMENT_TOKEN,
                      **config)


def userflow_provider(userflow: Sandbox, **config: str) -> UserflowWebhookSubscriptionProvider:
    return configured(UserflowWebhookSubscriptionProvider(FAST_RETRIES),
                      userflowApiUrl=userflow.url, userflowApiKey=USERFLOW_KEY, **config)


def source_props(adopt: Adopt | None) -> dict[str, Any]:
    return source_inputs(SegmentSourceArgs(slug="userflow-test", name="Userflow (test)",
                                           adopt=adopt))


def destination_props(source_id: str, adopt: Adopt | None,
                      secret: str | None = HAND_SECRET) -> dict[str, Any]:
    args = SegmentWebhookDestinationArgs(source_id=source_id, bridge_url=BRIDGE,
                                         name="Userflow bridge (test)", adopt=adopt)
    # The program hands the secret over as a Pulumi secret; the provider receives its value.
    return {**destination_inputs(args), "adopt_shared_secret": secret}


def webhook_props(adopt: Adopt | None) -> dict[str, Any]:
    return webhook_inputs(UserflowWebhookSubscriptionArgs(bridge_url=BRIDGE, adopt=adopt))


def by(how: str, key_stem: str, object_id: str, name: str) -> Adopt:
    if how == "id":
        return Adopt(key=f"{NS}{key_stem}Id", id=object_id)
    suffix = {"adoptUserflowSource": "Slug", "adoptDestination": "Name",
              "adoptUserflowWebhook": "Url"}[key_stem]
    return Adopt(key=f"{NS}{key_stem}{suffix}", name=name)


# -- adoption in place ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["id", "name"])
def test_a_hand_made_source_is_adopted_keeping_its_write_key(segment: Sandbox, how: str) -> None:
    # GIVEN the hand-made Userflow source, with the write key Userflow already sends with
    hand = hand_made_source(segment)
    provider = segment_provider(SegmentSourceProvider, segment)
    # WHEN the stack creates its source adopting it
    created = provider.create(source_props(by(how, "adoptUserflowSource", hand["id"],
                                              hand["slug"])))
    # THEN it is that source, under the stack's slug and name, same write key, marked adopted
    outs = created.outs or {}
    assert created.id == hand["id"]
    assert outs["write_key"] == hand["writeKeys"][0]
    assert (outs["slug"], outs["name"], outs["adopted"]) == ("userflow-test", "Userflow (test)",
                                                            True)
    [stored] = segment.state()["sources"]
    assert stored["slug"] == "userflow-test" and stored["writeKeys"] == hand["writeKeys"]


@pytest.mark.parametrize("how", ["id", "name"])
def test_a_hand_made_destination_is_switched_in_place(segment: Sandbox, how: str) -> None:
    # GIVEN the app's source and the hand-made destination sending to the old receiver
    app = hand_made_source(segment, "app")["id"]
    hand = hand_made_destination(segment, app)
    provider = segment_provider(SegmentWebhookDestinationProvider, segment)
    # WHEN the stack creates its destination adopting it
    created = provider.create(destination_props(
        app, by(how, "adoptDestination", hand, "Userflow (by hand)")))
    # THEN still one destination and one Send subscription: the hand-made ones, now sending to
    # the bridge, signed with the secret they were already signed with
    outs = created.outs or {}
    state = segment.state()
    [destination] = state["destinations"]
    [subscription] = state["subscriptions"]
    assert created.id == destination["id"] == hand and outs["adopted"] is True
    assert destination["name"] == "Userflow bridge (test)" and destination["enabled"] is True
    assert destination["settings"]["sharedSecret"] == HAND_SECRET == outs["shared_secret"]
    assert subscription["id"] == outs["subscription_id"]
    assert subscription["settings"]["url"] == f"{BRIDGE}/segment"
    assert subscription["trigger"] == TRIGGER and subscription["enabled"] is True


def test_an_adoption_interrupted_before_it_was_recorded_is_finished_by_the_next_up(
    segment: Sandbox,
) -> None:
    # GIVEN an adoption by name whose `up` died after Segment renamed the destination
    app = hand_made_source(segment, "app")["id"]
    hand = hand_made_destination(segment, app)
    provider = segment_provider(SegmentWebhookDestinationProvider, segment)
    props = destination_props(app, Adopt(key=f"{NS}adoptDestinationName",
                                         name="Userflow (by hand)"))
    provider.create(props)  # its result never reached the state
    # WHEN `up` runs again THEN it adopts the same destination, still the only one
    again = provider.create(props)
    assert again.id == hand and (again.outs or {})["adopted"] is True
    assert [d["id"] for d in segment.state()["destinations"]] == [hand]
    assert len(segment.state()["subscriptions"]) == 1


@pytest.mark.parametrize("how", ["id", "name"])
def test_a_hand_made_userflow_webhook_is_switched_in_place(userflow: Sandbox, how: str) -> None:
    hand = hand_made_webhook(userflow)
    provider = userflow_provider(userflow)
    created = provider.create(webhook_props(by(how, "adoptUserflowWebhook", hand["id"],
                                               hand["url"])))
    outs = created.outs or {}
    [stored] = userflow.state()["webhook_subscriptions"]
    assert created.id == stored["id"] == hand["id"] and outs["adopted"] is True
    assert stored["url"] == f"{BRIDGE}/userflow" and stored["disabled"] is False
    # The secret Userflow already signs with stays: the bridge is given it.
    assert stored["secret"] == hand["secret"] == outs["secret"]


def test_reads_and_updates_keep_the_adoption_mark(segment: Sandbox, userflow: Sandbox) -> None:
    hand = hand_made_webhook(userflow)
    provider = userflow_provider(userflow)
    inputs = webhook_props(Adopt(key=f"{NS}adoptUserflowWebhookId", id=hand["id"]))
    outs = provider.create(inputs).outs or {}
    read = provider.read(hand["id"], outs).outs or {}
    updated = provider.update(hand["id"], read, {**inputs, "topics": ["event"]}).outs or {}
    assert read["adopted"] is True and updated["adopted"] is True
    # AND a stack created before adoption existed keeps outputs without the mark
    assert "adopted" not in (provider.read(hand["id"], {"secret": "x"}).outs or {})


# -- what can't be adopted, said with the key that named it ----------------------------------------


def test_not_found_names_the_key(segment: Sandbox, userflow: Sandbox) -> None:
    app = hand_made_source(segment, "app")["id"]
    cases = [
        (segment_provider(SegmentSourceProvider, segment),
         source_props(Adopt(key=f"{NS}adoptUserflowSourceId", id="nosuchsource")),
         "adoptUserflowSourceId: no Segment source with id 'nosuchsource'"),
        (segment_provider(SegmentSourceProvider, segment),
         source_props(Adopt(key=f"{NS}adoptUserflowSourceSlug", name="nope")),
         "adoptUserflowSourceSlug: no Segment source with name 'nope'"),
        (segment_provider(SegmentWebhookDestinationProvider, segment),
         destination_props(app, Adopt(key=f"{NS}adoptDestinationId", id="nosuchdest")),
         "adoptDestinationId: no Webhooks (Actions) destination with id 'nosuchdest'"),
        (segment_provider(SegmentWebhookDestinationProvider, segment),
         destination_props(app, Adopt(key=f"{NS}adoptDestinationName", name="Nope")),
         "adoptDestinationName: no Webhooks (Actions) destination with name 'Nope'"),
        (userflow_provider(userflow),
         webhook_props(Adopt(key=f"{NS}adoptUserflowWebhookId", id="nosuchhook")),
         "adoptUserflowWebhookId: no Userflow webhook subscription with id 'nosuchhook'"),
        (userflow_provider(userflow),
         webhook_props(Adopt(key=f"{NS}adoptUserflowWebhookUrl", name="https://x.example/h")),
         "adoptUserflowWebhookUrl: no Userflow webhook subscription with name"),
    ]
    for provider, props, words in cases:
        with pytest.raises(AdoptionError) as caught:
            provider.create(props)
        assert f"config {NS}{words}" in str(caught.value)
    # AND nothing was created in place of what was not found
    assert len(segment.state()["sources"]) == 1
    assert segment.state()["destinations"] == []
    assert userflow.state()["webhook_subscriptions"] == []


def test_an_ambiguous_name_is_refused_naming_the_key_and_the_ids(
    segment: Sandbox, userflow: Sandbox
) -> None:
    app = hand_made_source(segment, "app")["id"]
    twins = sorted(hand_made_destination(segment, app, name="Userflow") for _ in range(2))
    provider = segment_provider(SegmentWebhookDestinationProvider, segment)
    with pytest.raises(AdoptionError) as caught:
        provider.create(destination_props(app, Adopt(key=f"{NS}adoptDestinationName",
                                                     name="Userflow")))
    message = str(caught.value)
    assert f"config {NS}adoptDestinationName: 2 " in message
    assert all(twin in message for twin in twins) and "by its id" in message
    # AND neither was touched
    assert all(s["settings"]["url"] == f"{OLD_RECEIVER}/segment"
               for s in segment.state()["subscriptions"])

    hooks = sorted(hand_made_webhook(userflow)["id"] for _ in range(2))
    with pytest.raises(AdoptionError) as caught:
        userflow_provider(userflow).create(webhook_props(Adopt(
            key=f"{NS}adoptUserflowWebhookUrl", name=f"{OLD_RECEIVER}/userflow")))
    assert f"config {NS}adoptUserflowWebhookUrl: 2 " in str(caught.value)
    assert all(hook in str(caught.value) for hook in hooks)


def test_a_destination_that_cannot_be_taken_over_as_is(segment: Sandbox) -> None:
    app = hand_made_source(segment, "app")["id"]
    other = hand_made_source(segment, "other-app")["id"]
    provider = segment_provider(SegmentWebhookDestinationProvider, segment)
    elsewhere = hand_made_destination(segment, other)
    two_paths = hand_made_destination(segment, app, name="Two paths", sends=2)
    cases = [
        (destination_props(app, Adopt(key=f"{NS}adoptDestinationId", id=elsewhere)),
         f"is on source {other}, not on the app's source {app}"),
        (destination_props(app, Adopt(key=f"{NS}adoptDestinationId", id=two_paths)),
         "has 2 enabled Send subscriptions"),
        (destination_props(app, Adopt(key=f"{NS}adoptDestinationId", id=two_paths), None),
         "needs the shared secret it signs with now, as userflow-segment:adoptDestination"),
    ]
    for props, words in cases:
        with pytest.raises(AdoptionError, match=f"config {NS}adoptDestinationId: ") as caught:
            provider.create(props)
        assert words in str(caught.value)
    # AND nothing was written: every check comes before the first change
    state = segment.state()
    assert all(s["settings"]["url"] == f"{OLD_RECEIVER}/segment" for s in state["subscriptions"])
    assert {d["name"] for d in state["destinations"]} == {"Userflow (by hand)", "Two paths"}


def test_the_stack_slug_taken_by_another_source_is_refused(segment: Sandbox) -> None:
    hand = hand_made_source(segment)
    taken = hand_made_source(segment, "userflow-test")
    provider = segment_provider(SegmentSourceProvider, segment)
    with pytest.raises(AdoptionError) as caught:
        provider.create(source_props(Adopt(key=f"{NS}adoptUserflowSourceId", id=hand["id"])))
    assert f"'userflow-test' already belongs to source {taken['id']}" in str(caught.value)


# -- destroy ------------------------------------------------------------------------------------


def test_destroy_releases_adopted_objects(segment: Sandbox, userflow: Sandbox) -> None:
    # GIVEN an adopted source, destination and webhook
    source = hand_made_source(segment)
    app = hand_made_source(segment, "app")["id"]
    destination = hand_made_destination(segment, app)
    hook = hand_made_webhook(userflow)
    adopted = [
        (segment_provider(SegmentSourceProvider, segment),
         source_props(Adopt(key=f"{NS}adoptUserflowSourceId", id=source["id"]))),
        (segment_provider(SegmentWebhookDestinationProvider, segment),
         destination_props(app, Adopt(key=f"{NS}adoptDestinationId", id=destination))),
        (userflow_provider(userflow),
         webhook_props(Adopt(key=f"{NS}adoptUserflowWebhookId", id=hook["id"]))),
    ]
    # WHEN destroyed with the default policy
    for provider, props in adopted:
        created = provider.create(props)
        provider.delete(created.id, created.outs or {})
    # THEN all are kept; the two that deliver are disabled (their bridge may be gone)
    seg, uf = segment.state(), userflow.state()
    assert {s["id"] for s in seg["sources"]} == {source["id"], app}
    [kept] = seg["destinations"]
    assert kept["id"] == destination and kept["enabled"] is False
    assert len(seg["subscriptions"]) == 1
    [kept_hook] = uf["webhook_subscriptions"]
    assert kept_hook["id"] == hook["id"] and kept_hook["disabled"] is True


def test_destroy_deletes_adopted_objects_when_configured(
    segment: Sandbox, userflow: Sandbox
) -> None:
    source = hand_made_source(segment)
    app = hand_made_source(segment, "app")["id"]
    destination = hand_made_destination(segment, app)
    hook = hand_made_webhook(userflow)
    adopted = [
        (segment_provider(SegmentSourceProvider, segment, adoptedOnDestroy="delete"),
         source_props(Adopt(key=f"{NS}adoptUserflowSourceId", id=source["id"]))),
        (segment_provider(SegmentWebhookDestinationProvider, segment,
                          adoptedOnDestroy="delete"),
         destination_props(app, Adopt(key=f"{NS}adoptDestinationId", id=destination))),
        (userflow_provider(userflow, adoptedOnDestroy="delete"),
         webhook_props(Adopt(key=f"{NS}adoptUserflowWebhookId", id=hook["id"]))),
    ]
    for provider, props in adopted:
        created = provider.create(props)
        provider.delete(created.id, created.outs or {})
    seg, uf = segment.state(), userflow.state()
    assert [s["id"] for s in seg["sources"]] == [app]
    assert seg["destinations"] == [] and seg["subscriptions"] == []
    assert uf["webhook_subscriptions"] == []


# -- adoption keys set too late -------------------------------------------------------------------


def test_adoption_keys_for_an_object_the_stack_already_made_are_refused() -> None:
    # GIVEN a webhook subscription the stack created itself (no adoption mark)
    provider = UserflowWebhookSubscriptionProvider()
    olds = {"subscription_id": "w1", "secret": "s", "url": f"{BRIDGE}/userflow",
            "topics": ["event"], "api_version": "2020-01-03"}
    adopt = Adopt(key=f"{NS}adoptUserflowWebhookId", id="hand1")
    # WHEN the adoption key appears THEN preview says so, naming the key, instead of leaving
    # the hand-made subscription delivering beside the stack's own
    with pytest.raises(AdoptionError, match=f"config {NS}adoptUserflowWebhookId: this stack "
                                            "already has its own object"):
        provider.diff("w1", olds, webhook_props(adopt))
    # AND once adopted, the key may stay: no change
    adopted = {**olds, "adopted": True, "topics": sorted(webhook_props(None)["topics"])}
    assert provider.diff("w1", adopted, webhook_props(adopt)).changes is False
