"""Mapping, table-driven from Segment spec payloads and Userflow webhook payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge_code.mapping import (
    MappingConfig,
    MappingError,
    Skip,
    UserflowCall,
    default_mapping_path,
    load_mapping,
    read_mapping_file,
    segment_event_to_userflow,
    segment_message_id,
    title_case,
    userflow_name,
    userflow_notification_to_segment,
)
from tests.bridge.helpers import load_event

DEFAULT = MappingConfig()


def config(**sections: dict[str, Any]) -> MappingConfig:
    return load_mapping(sections)


SEGMENT_CASES: list[tuple[str, MappingConfig, UserflowCall | Skip]] = [
    ("segment_identify.json", DEFAULT, UserflowCall("POST", "/users", {
        "id": "97980cfea0067",
        "attributes": {
            "name": "Peter Gibbons", "email": "peter@example.com", "plan": "premium",
            "logins": 5, "first_name": "Peter", "address_street": "6th St",
            "address_city": "San Francisco", "address_geo_lat": 37.7,
            "tags": ["beta", "admin"], "signed_up_at": "2015-02-23T22:28:55.111Z"}})),
    ("segment_identify.json", config(segment_to_userflow={"nested_objects": "drop",
                                                          "name_case": "keep"}),
     UserflowCall("POST", "/users", {"id": "97980cfea0067", "attributes": {
         "name": "Peter Gibbons", "email": "peter@example.com", "plan": "premium",
         "logins": 5, "firstName": "Peter", "tags": ["beta", "admin"],
         "signed_up_at": "2015-02-23T22:28:55.111Z"}})),
    ("segment_track.json", DEFAULT, UserflowCall("POST", "/events", {
        "user_id": "AiUGstSDIg", "name": "order_completed", "group_id": "acme",
        "attributes": {"revenue": 39.95, "shipping_method": "2-day", "company_id": "other",
                       "items_count": 2, "bridged_from": "segment"}})),
    ("segment_group.json", DEFAULT, UserflowCall("POST", "/users", {
        "id": "97980cfea0067", "groups": [{"id": "0e8c78ea9d97a7b8185e8632", "attributes": {
            "name": "Initech", "industry": "Technology", "employees": 329,
            "plan": "enterprise"}}]})),
    ("segment_page.json", DEFAULT, Skip("disabled")),
    ("segment_page.json", config(segment_to_userflow={"page": {"enabled": True}}),
     UserflowCall("POST", "/events", {"user_id": "97980cfea0067", "name": "page_viewed",
                                      "attributes": {"title": "Welcome | Initech",
                                                     "url": "http://www.example.com",
                                                     "path": "/", "bridged_from": "segment"}})),
    ("segment_screen.json", config(segment_to_userflow={
        "screen": {"enabled": True, "use_name": True}, "name_case": "keep"}),
     UserflowCall("POST", "/events", {"user_id": "97980cfea0067", "name": "Home",
                                      "attributes": {"variation": "blue signup button",
                                                     "bridged_from": "segment"}})),
    ("segment_screen.json", DEFAULT, Skip("disabled")),
    ("segment_alias.json", DEFAULT, Skip("unsupported")),
    ("segment_track_anonymous.json", DEFAULT, Skip("no_user_id")),
    ("segment_track_from_bridge.json", DEFAULT, Skip("echo")),
    ("segment_delete.json", DEFAULT, Skip("disabled")),
    ("segment_delete.json", config(segment_to_userflow={"delete": True}),
     UserflowCall("DELETE", "/users/user%201%2Fa", None)),
    ("segment_track.json", config(segment_to_userflow={"track": False}), Skip("disabled")),
]


@pytest.mark.parametrize(("fixture", "cfg", "expected"), SEGMENT_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(SEGMENT_CASES)])
def test_segment_event_to_userflow(fixture: str, cfg: MappingConfig,
                                   expected: UserflowCall | Skip) -> None:
    assert segment_event_to_userflow(load_event(fixture), cfg) == expected


def test_track_group_id_from_configured_property_when_context_has_none() -> None:
    event = load_event("segment_track.json")
    del event["context"]["groupId"]
    call = segment_event_to_userflow(event, DEFAULT)
    assert isinstance(call, UserflowCall) and call.body is not None
    assert call.body["group_id"] == "other"
    no_property = config(segment_to_userflow={"group_id_property": None})
    call = segment_event_to_userflow(event, no_property)
    assert isinstance(call, UserflowCall) and call.body is not None
    assert "group_id" not in call.body


def test_numeric_created_at_becomes_iso8601() -> None:
    event = {"type": "identify", "userId": "u", "traits": {"createdAt": 1_700_000_000}}
    call = segment_event_to_userflow(event, DEFAULT)
    assert isinstance(call, UserflowCall) and call.body is not None
    assert call.body["attributes"]["signed_up_at"] == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize("event", [
    "not an object", {"type": "track", "userId": "u"}, {"type": "track", "userId": "u",
                                                        "event": "   "},
    {"type": "group", "userId": "u"}, {"type": "identify", "userId": {"x": 1}},
    {"type": []},  # found by the fuzzer: an unhashable type once raised TypeError
])
def test_malformed_segment_events_are_skipped_not_errors(event: Any) -> None:
    assert isinstance(segment_event_to_userflow(event, DEFAULT), Skip)


@pytest.mark.parametrize(("name", "case", "expected"), [
    ("firstName", "snake_case", "first_name"),
    ("Order Completed", "snake_case", "order_completed"),
    ("plan.tier/β", "snake_case", "plan_tier"),
    ("plan.tier/β", "keep", "plan_tier__"),
    ("Order Completed", "keep", "Order Completed"),
])
def test_userflow_names_only_use_allowed_characters(name: str, case: Any, expected: str) -> None:
    assert userflow_name(name, case) == expected


USERFLOW_CASES: list[tuple[str, MappingConfig, dict[str, Any] | Skip]] = [
    ("userflow_event_tracked.json", DEFAULT, {
        "type": "track", "event": "Flow Started", "userId": "97980cfea0067",
        "properties": {"flow_id": "f_12", "flow_name": "Onboarding", "flow_version_id": "v3"},
        "messageId": "userflow-wn_7fTz1bU0r2", "timestamp": "2024-05-01T10:00:00.000Z",
        "context": {"userflowBridge": {"direction": "userflow-to-segment"},
                    "groupId": "acme"}}),
    ("userflow_checklist_task_completed.json", DEFAULT, {
        "type": "track", "event": "Checklist Task Completed", "userId": "u-42",
        "properties": {"checklist_id": "c_1", "task_name": "Invite a teammate"},
        "messageId": "userflow-wn_checklist_1", "timestamp": "2024-05-01T11:00:00.000Z",
        "context": {"userflowBridge": {"direction": "userflow-to-segment"}}}),
    ("userflow_checklist_task_completed.json",
     config(userflow_to_segment={"event_name_case": "keep"}), {
        "type": "track", "event": "checklist_task_completed", "userId": "u-42",
        "properties": {"checklist_id": "c_1", "task_name": "Invite a teammate"},
        "messageId": "userflow-wn_checklist_1", "timestamp": "2024-05-01T11:00:00.000Z",
        "context": {"userflowBridge": {"direction": "userflow-to-segment"}}}),
    ("userflow_event_echo.json", DEFAULT, Skip("echo")),
    ("userflow_user_updated.json", DEFAULT, Skip("disabled")),
    ("userflow_user_updated.json", config(userflow_to_segment={"users": True}), {
        "type": "identify", "userId": "97980cfea0067",
        "traits": {"name": "Peter Gibbons", "email": "peter@example.com", "plan": "premium"},
        "messageId": "userflow-wn_user_1", "timestamp": "2024-05-01T12:00:00.000Z",
        "context": {"userflowBridge": {"direction": "userflow-to-segment"}}}),
    ("userflow_group_created.json", DEFAULT, Skip("unsupported")),
    ("userflow_event_tracked.json", config(userflow_to_segment={"events": False}),
     Skip("disabled")),
]


@pytest.mark.parametrize(("fixture", "cfg", "expected"), USERFLOW_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(USERFLOW_CASES)])
def test_userflow_notification_to_segment(fixture: str, cfg: MappingConfig,
                                          expected: dict[str, Any] | Skip) -> None:
    assert userflow_notification_to_segment(load_event(fixture), cfg) == expected


def test_userflow_event_without_user_is_skipped() -> None:
    notification = load_event("userflow_event_tracked.json")
    notification["data"]["object"]["user_id"] = None
    assert userflow_notification_to_segment(notification, DEFAULT) == Skip("no_user_id")


def test_the_two_directions_do_not_loop() -> None:
    # GIVEN a Userflow event mapped to Segment
    message = userflow_notification_to_segment(load_event("userflow_event_tracked.json"),
                                               DEFAULT)
    assert isinstance(message, dict)
    # WHEN Segment delivers it back to the bridge THEN it is dropped as an echo
    assert segment_event_to_userflow(message, DEFAULT) == Skip("echo")
    # AND a Segment event written to Userflow, when Userflow reports it, is dropped too
    call = segment_event_to_userflow(load_event("segment_track.json"), DEFAULT)
    assert isinstance(call, UserflowCall) and call.body is not None
    notification = {"id": "wn_x", "topic": "event.tracked", "data": {"object": {
        "name": call.body["name"], "attributes": call.body["attributes"],
        "user_id": call.body["user_id"]}}}
    assert userflow_notification_to_segment(notification, DEFAULT) == Skip("echo")


def test_segment_message_id_is_stable_and_short() -> None:
    assert segment_message_id("wn_1") == segment_message_id("wn_1") == "userflow-wn_1"
    long_id = segment_message_id("x" * 200)
    assert len(long_id) < 100 and long_id == segment_message_id("x" * 200)
    assert title_case("flow_started") == "Flow Started"


# --- the mapping file -------------------------------------------------------------------------

def test_shipped_yaml_equals_the_coded_defaults() -> None:
    assert read_mapping_file(Path(__file__).parents[2] / "bridge_code/mapping.yaml") == DEFAULT
    assert default_mapping_path().name in {"mapping.json", "mapping.yaml"}


def test_json_mapping_is_read_without_yaml(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({"userflow_to_segment": {"users": True}}))
    assert read_mapping_file(path).userflow_to_segment.users is True


@pytest.mark.parametrize(("data", "message"), [
    ({"segment_to_userflow": {"identify": "yes"}},
     "segment_to_userflow.identify: expected true or false"),
    ({"segment_to_userflow": {"colour": 1}}, "unknown key.*colour"),
    ({"other": {}}, "unknown top-level key.*other"),
    ({"segment_to_userflow": {"nested_objects": "squash"}},
     "nested_objects: expected one of flatten, drop"),
    ({"segment_to_userflow": {"page": {"event_name": ""}}},
     "segment_to_userflow.page.event_name: expected a non-empty string"),
    ({"userflow_to_segment": []}, "userflow_to_segment: expected a mapping"),
])
def test_invalid_mapping_names_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        load_mapping(data)


def test_unreadable_or_broken_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot read"):
        read_mapping_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(MappingError, match="not valid JSON"):
        read_mapping_file(broken)
