"""How events cross between Segment and Userflow: pure functions, configured by a mapping file.

Nothing here does I/O except `read_mapping_file`. Each mapping either returns the upstream
call to make or a `Skip` with a reason the handlers count ("no_user_id", "echo", ...).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard, cast
from urllib.parse import quote

JsonObject = dict[str, Any]

# Loop markers agreed in docs/ARCHITECTURE.md.
BRIDGED_FROM_ATTRIBUTE = "bridged_from"
BRIDGED_FROM_VALUE = "segment"
SEGMENT_MARKER_KEY = "userflowBridge"
SEGMENT_MARKER = {"direction": "userflow-to-segment"}

SKIP_NO_USER_ID = "no_user_id"
SKIP_ECHO = "echo"
SKIP_DISABLED = "disabled"
SKIP_UNSUPPORTED = "unsupported"
SKIP_INVALID = "invalid"

# Deeper nesting than this is dropped rather than flattened: such keys are unusable as
# Userflow attribute names anyway, and it bounds the recursion on hostile input.
MAX_FLATTEN_DEPTH = 5
SEGMENT_MESSAGE_ID_MAX = 100
# Segment's Tracking API caps one event at 32 KB (its HTTP API source docs).
SEGMENT_EVENT_LIMIT = 32 * 1024

NestedPolicy = Literal["flatten", "drop"]
NameCase = Literal["snake_case", "keep"]
EventNameCase = Literal["title_case", "keep"]


class MappingError(ValueError):
    """The mapping file is invalid; the message names the key and what was expected."""


@dataclass(frozen=True)
class ViewMapping:
    """How page or screen calls become Userflow events."""

    enabled: bool = False
    event_name: str = "Page Viewed"
    use_name: bool = False


@dataclass(frozen=True)
class SegmentToUserflow:
    """Segment -> Userflow settings (see mapping.yaml for each key's meaning)."""

    identify: bool = True
    track: bool = True
    group: bool = True
    page: ViewMapping = ViewMapping(event_name="Page Viewed")
    screen: ViewMapping = ViewMapping(event_name="Screen Viewed")
    delete: bool = False
    group_id_property: str | None = "company_id"
    nested_objects: NestedPolicy = "flatten"
    name_case: NameCase = "snake_case"

    @functools.cached_property
    def enabled_types(self) -> frozenset[str]:
        """The Segment call types switched on; computed once (asked of every event)."""
        switches = {"identify": self.identify, "track": self.track, "group": self.group,
                    "page": self.page.enabled, "screen": self.screen.enabled,
                    "delete": self.delete}
        return frozenset(kind for kind, on in switches.items() if on)


@dataclass(frozen=True)
class UserflowToSegment:
    """Userflow -> Segment settings (see mapping.yaml for each key's meaning)."""

    events: bool = True
    users: bool = False
    event_name_case: EventNameCase = "title_case"


@dataclass(frozen=True)
class MappingConfig:
    """The whole mapping file, validated."""

    segment_to_userflow: SegmentToUserflow = SegmentToUserflow()
    userflow_to_segment: UserflowToSegment = UserflowToSegment()


@dataclass(frozen=True)
class UserflowCall:
    """One Userflow REST call: method, path under the API base URL, JSON body."""

    method: Literal["POST", "DELETE"]
    path: str
    body: JsonObject | None


@dataclass(frozen=True)
class Skip:
    """An event deliberately not forwarded, with the reason it is counted under."""

    reason: str


# --- the mapping file -------------------------------------------------------------------

def _section(data: Mapping[str, Any], key: str, allowed: set[str], where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise MappingError(f"{where}{key}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise MappingError(
            f"{where}{key}: unknown key(s) {', '.join(map(str, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}")
    return value


def _bool(section: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise MappingError(f"{where}{key}: expected true or false, got {value!r}")
    return value


def _choice(section: Mapping[str, Any], key: str, default: str, choices: tuple[str, ...],
            where: str) -> str:
    value = section.get(key, default)
    if value not in choices:
        raise MappingError(f"{where}{key}: expected one of {', '.join(choices)}, got {value!r}")
    return cast(str, value)


def _text(section: Mapping[str, Any], key: str, default: str | None, where: str,
          nullable: bool = False) -> str | None:
    value = section.get(key, default)
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value.strip():
        kind = "a non-empty string or null" if nullable else "a non-empty string"
        raise MappingError(f"{where}{key}: expected {kind}, got {value!r}")
    return value


def _view(section: Mapping[str, Any], key: str, default: ViewMapping, where: str) -> ViewMapping:
    raw = _section(section, key, {"enabled", "event_name", "use_name"}, where)
    inner = f"{where}{key}."
    return ViewMapping(
        enabled=_bool(raw, "enabled", default.enabled, inner),
        event_name=cast(str, _text(raw, "event_name", default.event_name, inner)),
        use_name=_bool(raw, "use_name", default.use_name, inner),
    )


def load_mapping(data: Mapping[str, Any]) -> MappingConfig:
    """Validate a parsed mapping file; missing keys keep their defaults, unknown keys fail."""
    if not isinstance(data, Mapping):
        raise MappingError(f"mapping: expected a mapping at the top, got {type(data).__name__}")
    unknown = sorted(set(data) - {"segment_to_userflow", "userflow_to_segment"})
    if unknown:
        raise MappingError(f"mapping: unknown top-level key(s) {', '.join(map(str, unknown))}")
    s_default, u_default = SegmentToUserflow(), UserflowToSegment()
    s = _section(data, "segment_to_userflow", {
        "identify", "track", "group", "page", "screen", "delete", "group_id_property",
        "nested_objects", "name_case"}, "")
    w = "segment_to_userflow."
    u = _section(data, "userflow_to_segment", {"events", "users", "event_name_case"}, "")
    v = "userflow_to_segment."
    return MappingConfig(
        segment_to_userflow=SegmentToUserflow(
            identify=_bool(s, "identify", s_default.identify, w),
            track=_bool(s, "track", s_default.track, w),
            group=_bool(s, "group", s_default.group, w),
            page=_view(s, "page", s_default.page, w),
            screen=_view(s, "screen", s_default.screen, w),
            delete=_bool(s, "delete", s_default.delete, w),
            group_id_property=_text(s, "group_id_property", s_default.group_id_property, w,
                                    nullable=True),
            nested_objects=cast(NestedPolicy, _choice(
                s, "nested_objects", s_default.nested_objects, ("flatten", "drop"), w)),
            name_case=cast(NameCase, _choice(
                s, "name_case", s_default.name_case, ("snake_case", "keep"), w)),
        ),
        userflow_to_segment=UserflowToSegment(
            events=_bool(u, "events", u_default.events, v),
            users=_bool(u, "users", u_default.users, v),
            event_name_case=cast(EventNameCase, _choice(
                u, "event_name_case", u_default.event_name_case, ("title_case", "keep"), v)),
        ),
    )


def default_mapping_path() -> Path:
    """The packaged mapping.json next to this module if present, else mapping.yaml."""
    here = Path(__file__).resolve().parent
    packaged = here / "mapping.json"
    return packaged if packaged.exists() else here / "mapping.yaml"


def read_mapping_file(path: Path) -> MappingConfig:
    """Load and validate a mapping file: .json with the stdlib, .yaml/.yml with PyYAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise MappingError(f"{path}: cannot read the mapping file ({error.strerror})") from None
    if path.suffix in {".yaml", ".yml"}:
        try:
            import yaml  # lazy: PyYAML is not in the Lambda zip, which ships mapping.json
        except ImportError:
            raise MappingError(
                f"{path}: YAML mapping files need PyYAML; ship mapping.json instead") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise MappingError(f"{path}: not valid YAML ({error})") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as error:
            raise MappingError(f"{path}: not valid JSON ({error})") from None
    try:
        return load_mapping(data if data is not None else {})
    except MappingError as error:
        raise MappingError(f"{path}: {error}") from None


# --- names and values ----------------------------------------------------------------------

_NOT_ALLOWED_IN_NAME = re.compile(r"[^A-Za-z0-9_\- ]")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SNAKE_SEPARATORS = re.compile(r"[\s\-_]+")
_SEGMENT_TYPES = frozenset({"identify", "track", "group", "page", "screen", "delete"})


# Trait and property names come from a small vocabulary that repeats on every event: caching
# them keeps three regex passes per name off the hot path. Only short names are cached, so
# the cache holds at most NAME_CACHE_ENTRIES x NAME_CACHE_MAX_CHARS characters (and their
# converted copies) whatever the input: a few MB at most, never input-sized.
NAME_CACHE_ENTRIES = 4096
NAME_CACHE_MAX_CHARS = 128


def userflow_name(name: str, case: NameCase) -> str:
    """A Segment trait/property/event name as a Userflow name (letters, digits, _, -, space)."""
    if len(name) <= NAME_CACHE_MAX_CHARS:
        return _cached_userflow_name(name, case)
    return _userflow_name(name, case)


def _userflow_name(name: str, case: NameCase) -> str:
    if case == "snake_case":
        name = _CAMEL_BOUNDARY.sub("_", name).lower()
        name = _NOT_ALLOWED_IN_NAME.sub("_", name)
        return _SNAKE_SEPARATORS.sub("_", name).strip("_")
    return _NOT_ALLOWED_IN_NAME.sub("_", name).strip()


_cached_userflow_name = functools.lru_cache(maxsize=NAME_CACHE_ENTRIES)(_userflow_name)


def title_case(name: str) -> str:
    """flow_started -> "Flow Started", as Userflow's own analytics integrations name events."""
    if len(name) <= NAME_CACHE_MAX_CHARS:  # a few event names, every notification
        return _cached_title_case(name)
    return _title_case(name)


def _title_case(name: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in _SNAKE_SEPARATORS.split(name) if w)


_cached_title_case = functools.lru_cache(maxsize=NAME_CACHE_ENTRIES)(_title_case)


_SCALARS = (str, int, float, bool, type(None))


def userflow_attributes(values: Mapping[str, Any], cfg: SegmentToUserflow) -> JsonObject:
    """Traits/properties as Userflow attributes: names sanitized, nesting flattened or dropped."""
    out: JsonObject = {}
    _flatten_into(out, values, "", cfg, 0)
    return out


def _flatten_into(out: JsonObject, values: Mapping[str, Any], prefix: str,
                  cfg: SegmentToUserflow, depth: int) -> None:
    case = cfg.name_case
    for key, value in values.items():
        part = userflow_name(key if isinstance(key, str) else str(key), case)
        if not part:
            continue
        name = f"{prefix}_{part}" if prefix else part
        if isinstance(value, _SCALARS):
            out[name] = value
        elif isinstance(value, dict):
            if cfg.nested_objects == "flatten" and depth < MAX_FLATTEN_DEPTH:
                _flatten_into(out, value, name, cfg, depth + 1)
        elif isinstance(value, list) and all(isinstance(item, _SCALARS) for item in value):
            # Userflow list attributes hold plain values only.
            out[name] = value


def _iso8601(value: object) -> object:
    """createdAt as ISO 8601: numbers are read as Unix seconds (or milliseconds if huge)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) > 1e11 else value
        try:
            moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            return value
        return moment.isoformat().replace("+00:00", "Z")
    return value


def _id_string(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    """isinstance(value, Mapping), with parsed JSON's dict decided first: the ABC check costs
    several times more, and the hot paths ask it of every event."""
    return type(value) is dict or isinstance(value, Mapping)


def _object(value: object) -> dict[str, Any]:
    # Parsed JSON only holds dicts, so a dict check is enough (and much cheaper than Mapping).
    return value if isinstance(value, dict) else {}


# --- Segment -> Userflow -------------------------------------------------------------------

def segment_skip(event: object, config: MappingConfig) -> Skip | None:
    """Why this Segment event would not be forwarded, or None: the cheap part of the mapping,
    which the ingest handler runs before queueing."""
    cfg = config.segment_to_userflow
    if not isinstance(event, dict):
        return Skip(SKIP_INVALID)
    if SEGMENT_MARKER_KEY in _object(event.get("context")):
        return Skip(SKIP_ECHO)
    kind = event.get("type")
    if not isinstance(kind, str) or kind not in _SEGMENT_TYPES:
        return Skip(SKIP_UNSUPPORTED)
    if kind not in cfg.enabled_types:
        return Skip(SKIP_DISABLED)
    if _id_string(event.get("userId")) is None:
        return Skip(SKIP_NO_USER_ID)
    if kind == "group" and _id_string(event.get("groupId")) is None:
        return Skip(SKIP_INVALID)
    if kind == "track":
        name = event.get("event")
        if not isinstance(name, str) or not userflow_name(name, cfg.name_case):
            return Skip(SKIP_INVALID)
    return None


def segment_event_to_userflow(event: object, config: MappingConfig) -> UserflowCall | Skip:
    """Map one Segment spec event (identify, track, group, page, screen, delete, alias)."""
    skip = segment_skip(event, config)
    if skip is not None:
        return skip
    assert isinstance(event, dict)  # segment_skip checked it
    cfg = config.segment_to_userflow
    kind = event["type"]
    user_id = cast(str, _id_string(event["userId"]))
    if kind == "identify":
        return _identify(event, user_id, cfg)
    if kind == "group":
        return _group(event, user_id, cfg)
    if kind == "delete":
        return UserflowCall("DELETE", f"/users/{quote(user_id, safe='')}", None)
    properties = _object(event.get("properties"))
    if kind == "track":
        name = event["event"]
    else:
        view = cfg.page if kind == "page" else cfg.screen
        page_name = event.get("name") or properties.get("name")
        name = page_name if view.use_name and isinstance(page_name, str) and page_name.strip() \
            else view.event_name
    return _event(name, user_id, properties, _object(event.get("context")), cfg)


def _identify(event: dict[str, Any], user_id: str, cfg: SegmentToUserflow) -> UserflowCall:
    traits = dict(_object(event.get("traits")))
    created = traits.pop("createdAt", traits.pop("created_at", None))
    attributes = userflow_attributes(traits, cfg)
    if created is not None:
        attributes["signed_up_at"] = _iso8601(created)
    return UserflowCall("POST", "/users", {"id": user_id, "attributes": attributes})


def _group(event: dict[str, Any], user_id: str, cfg: SegmentToUserflow) -> UserflowCall:
    attributes = userflow_attributes(_object(event.get("traits")), cfg)
    group_id = cast(str, _id_string(event["groupId"]))  # segment_skip checked it
    return UserflowCall("POST", "/users", {
        "id": user_id, "groups": [{"id": group_id, "attributes": attributes}]})


def _event(name: str, user_id: str, properties: dict[str, Any], context: dict[str, Any],
           cfg: SegmentToUserflow) -> UserflowCall | Skip:
    event_name = userflow_name(name, cfg.name_case)
    if not event_name:
        return Skip(SKIP_INVALID)
    attributes = userflow_attributes(properties, cfg)
    attributes[BRIDGED_FROM_ATTRIBUTE] = BRIDGED_FROM_VALUE
    body: JsonObject = {"user_id": user_id, "name": event_name, "attributes": attributes}
    group_id = _id_string(context.get("groupId"))
    if group_id is None and cfg.group_id_property:
        group_id = _id_string(properties.get(cfg.group_id_property))
    if group_id is not None:
        body["group_id"] = group_id
    return UserflowCall("POST", "/events", body)


# --- Userflow -> Segment -------------------------------------------------------------------

def segment_message_id(notification_id: str) -> str:
    """Segment messageId from the webhook notification id, so redeliveries dedupe (< 100 chars)."""
    message_id = f"userflow-{notification_id}"
    if len(message_id) >= SEGMENT_MESSAGE_ID_MAX:
        message_id = "userflow-" + hashlib.sha256(notification_id.encode()).hexdigest()
    return message_id


def userflow_skip(notification: object, config: MappingConfig) -> Skip | None:
    """Why this Userflow notification would not be forwarded, or None: the checks of
    `userflow_notification_to_segment` without building the message (the ingest handler's
    part, as `segment_skip` is for Segment events)."""
    checked = _checked_notification(notification, config.userflow_to_segment)
    return checked if isinstance(checked, Skip) else None


def _checked_notification(notification: object, cfg: UserflowToSegment
                          ) -> Skip | tuple[Mapping[str, Any], str, Mapping[str, Any], str, bool]:
    """A notification the mapping forwards as (notification, its id, its data object, the
    user id, whether it is a tracked event rather than a user), or why it does not."""
    if not is_mapping(notification):
        return Skip(SKIP_INVALID)
    notification_id = _id_string(notification.get("id"))
    topic = notification.get("topic")
    data = notification.get("data")
    obj = data.get("object") if is_mapping(data) else None
    if notification_id is None or not isinstance(topic, str) or not is_mapping(obj):
        return Skip(SKIP_INVALID)
    tracked = topic == "event.tracked" or topic.startswith("event.tracked.")
    if tracked:
        if not cfg.events:
            return Skip(SKIP_DISABLED)
        attributes = obj.get("attributes")
        if is_mapping(attributes) and attributes.get(BRIDGED_FROM_ATTRIBUTE) == BRIDGED_FROM_VALUE:
            return Skip(SKIP_ECHO)
        user_id = _id_string(obj.get("user_id"))
        if user_id is None:
            return Skip(SKIP_NO_USER_ID)
        name = obj.get("name")
        if not isinstance(name, str) or not name.strip():
            return Skip(SKIP_INVALID)
    elif topic in {"user.created", "user.updated"}:
        if not cfg.users:
            return Skip(SKIP_DISABLED)
        user_id = _id_string(obj.get("id"))
        if user_id is None:
            return Skip(SKIP_NO_USER_ID)
    else:
        return Skip(SKIP_UNSUPPORTED)
    return notification, notification_id, obj, user_id, tracked


def userflow_notification_to_segment(notification: object,
                                     config: MappingConfig) -> JsonObject | Skip:
    """Map one Userflow webhook notification to a Segment track or identify message."""
    cfg = config.userflow_to_segment
    checked = _checked_notification(notification, cfg)
    if isinstance(checked, Skip):
        return checked
    notification, notification_id, obj, user_id, tracked = checked
    context: JsonObject = {SEGMENT_MARKER_KEY: dict(SEGMENT_MARKER)}
    attributes = obj.get("attributes")
    attributes = dict(attributes) if is_mapping(attributes) else {}
    if tracked:
        name = obj["name"]
        group_id = _id_string(obj.get("group_id"))
        if group_id is not None:
            context["groupId"] = group_id
        message: JsonObject = {
            "type": "track",
            "event": title_case(name) if cfg.event_name_case == "title_case" else name,
            "userId": user_id,
            "properties": attributes,
        }
        timestamp = obj.get("time") or obj.get("created_at") or notification.get("created_at")
    else:
        message = {"type": "identify", "userId": user_id, "traits": attributes}
        timestamp = notification.get("created_at")
    message["messageId"] = segment_message_id(notification_id)
    if isinstance(timestamp, str) and timestamp:
        message["timestamp"] = timestamp
    message["context"] = context
    return message
