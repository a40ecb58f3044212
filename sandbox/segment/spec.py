"""Validation of the Segment emulator's Public API traffic against Segment's OpenAPI spec.

What it validates against, by default, ships in this repository: `SHIPPED_SPEC_PATH`, the
facts of Segment's Public API OpenAPI document v36.2.0 that this project uses (the operations
the emulator serves, their parameters and the schemas they reach), without descriptions,
examples, summaries or `x-*` extensions. `scripts/extract_segment_spec.py` writes it from the
official document (https://docs.segmentapis.com, "Download OpenAPI spec") with
`extract_subset`. `SANDBOX_SEGMENT_SPEC` or the emulator's `--spec PATH` point at another copy,
e.g. the full official YAML, which is reduced the same way on load.

Parsing the full YAML (1.6 MB) takes ~0.8 s and openapi-core's own check of a whole document
~2.5 s more. To start in well under 2 s the emulator
- reduces any spec to the served operations on load (`extract_subset`; the shipped subset is
  already reduced, so this changes nothing there);
- caches the reduced document as JSON in the temp directory, keyed by the SHA-256 of the spec
  file and `PRUNE_VERSION`, so only the first start on a machine parses YAML;
- skips openapi-core's spec-document check (the official file is not ours to fix), and
- builds the `OpenAPI` object once per process (`load_spec`), reusing its validators, and
- validates without unmarshalling (building Python objects from every body is ~15x slower).

One normalisation on load (`normalise`), not in the shipped file, which stays what Segment
publishes: the spec declares `pagination` as `style: deepObject` without `explode: true`;
OpenAPI's default `explode` is false for non-form styles, for which openapi-core has no
deepObject reader, yet the real API reads `pagination[count]=…`. `normalise` sets
`explode: true` on deepObject parameters so the spec means what the API does. The spec also
declares `style: deepObject` on string and array parameters (`granularity`, `startTime`,
`sourceId` of `GET /events/volume` and of the delivery metrics), which OpenAPI defines for
objects only; Segment's own examples send them as plain parameters (`granularity=DAY`), so
`normalise` reads those as `form` (repeated for arrays).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.segment.routes import SPEC_OPERATIONS

SPEC_VERSION = "36.2.0"
SHIPPED_SPEC_PATH = Path(__file__).with_name(f"public-api-v{SPEC_VERSION}.subset.json")
SPEC_PATH_ENV = "SANDBOX_SEGMENT_SPEC"
PRUNE_VERSION = "4"
SPEC_HOST_URL = "https://api.segmentapis.com"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

MEDIA_V1 = "application/vnd.segment.v1+json"
MEDIA_V1BETA = "application/vnd.segment.v1beta+json"
MEDIA_V1ALPHA = "application/vnd.segment.v1alpha+json"
SEGMENT_MEDIA_TYPES = (MEDIA_V1, MEDIA_V1BETA, MEDIA_V1ALPHA)

# Keys that only document: dropped from every object of the spec (never from a map of names,
# where `description` may well be a property).
DOC_KEYS = frozenset({"description", "summary", "example", "examples", "externalDocs", "tags"})
# Maps whose keys are names (paths, status codes, media types, properties, schemas …).
NAME_MAPS = frozenset(
    {"paths", "content", "headers", "properties", "schemas", "securitySchemes", "encoding"}
)
# Values taken literally: what they hold is data, not spec objects.
LITERAL_KEYS = frozenset({"default", "enum", "const", "mapping"})
ORIGIN_NOTE = (
    "The operations, parameters and schemas of Segment's Public API OpenAPI document "
    f"v{SPEC_VERSION} (https://docs.segmentapis.com) that this project uses, without "
    "descriptions, examples or extensions. Written by scripts/extract_segment_spec.py from "
    "the official document: regenerate it, never edit it by hand."
)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _documentation(key: str, role: str) -> bool:
    if role == "response" and key == "description":
        return False  # required by OpenAPI: the status phrase, e.g. "OK"
    return key in DOC_KEYS or key.startswith("x-")


def strip_docs(node: Any, role: str = "object") -> Any:
    """`node` without documentation: `DOC_KEYS` and `x-*` keys go, facts stay.

    `role` says what `node` is: "object" (keys are OpenAPI keywords), "names" (keys are
    names), "responses" (status code → response) or "response" (whose `description` is
    required by OpenAPI and stays: it is the status phrase, e.g. "OK").
    """
    if isinstance(node, list):
        return [strip_docs(item) for item in node]
    if not isinstance(node, dict):
        return node
    if role == "names":
        return {key: strip_docs(value) for key, value in node.items()}
    if role == "responses":
        return {code: strip_docs(response, "response") for code, response in node.items()}
    kept: dict[str, Any] = {}
    for key, value in node.items():
        if _documentation(key, role):
            continue
        if key in LITERAL_KEYS:
            kept[key] = json.loads(json.dumps(value))
        elif key == "responses":
            kept[key] = strip_docs(value, "responses")
        else:
            kept[key] = strip_docs(value, "names" if key in NAME_MAPS else "object")
    return kept


def _operations(
    paths: Mapping[str, Any], operations: tuple[tuple[str, str], ...]
) -> dict[str, Any]:
    """The path items of `operations` ((method, template) pairs), holding only those methods
    and the path-level keys that are not methods (e.g. shared `parameters`)."""
    kept: dict[str, Any] = {}
    for method, template in operations:
        item = paths.get(template)
        if item is None or method not in item:
            raise KeyError(f"the spec has no operation {method.upper()} {template}")
        target = kept.setdefault(template, {k: v for k, v in item.items() if k not in HTTP_METHODS})
        target[method] = item[method]
    return kept


def extract_subset(
    spec: Mapping[str, Any], operations: tuple[tuple[str, str], ...] = SPEC_OPERATIONS
) -> dict[str, Any]:
    """What this project needs of `spec`: `operations` and the schemas they reach, without
    documentation, `info.version` pinned. Applied to its own output it changes nothing."""
    paths = strip_docs(_operations(spec["paths"], operations), "names")
    schemas = spec["components"]["schemas"]
    needed: set[str] = set()
    todo = list(_refs(paths))
    while todo:
        ref = todo.pop()
        prefix, _, name = ref.rpartition("/")
        if prefix != "#/components/schemas":
            raise ValueError(f"unsupported $ref {ref!r}: only component schemas are followed")
        if name not in needed:
            needed.add(name)
            todo.extend(_refs(schemas[name]))
    return {
        "openapi": spec["openapi"],
        "info": {
            "title": spec["info"]["title"],
            "version": SPEC_VERSION,
            "description": ORIGIN_NOTE,
        },
        "servers": [{"url": server["url"]} for server in spec["servers"]],
        "security": spec.get("security", []),
        "paths": paths,
        "components": {
            "securitySchemes": strip_docs(spec["components"].get("securitySchemes", {}), "names"),
            "schemas": {name: strip_docs(schemas[name]) for name in sorted(needed)},
        },
    }


def _is_object_schema(schema: Any) -> bool:
    """A parameter schema that is an object (inline, or a `$ref` to a component schema, which
    in this document are objects wherever a parameter names one, e.g. `PaginationInput`)."""
    return isinstance(schema, dict) and (schema.get("type") == "object" or "$ref" in schema)


def normalise(subset: dict[str, Any]) -> dict[str, Any]:
    """`subset` as the real API reads it (module docstring): deepObject parameters exploded,
    and deepObject on a string or array parameter read as a plain (form) parameter."""
    for item in subset["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if not isinstance(parameter, dict) or parameter.get("style") != "deepObject":
                    continue
                if not _is_object_schema(parameter.get("schema")):
                    parameter["style"] = "form"
                parameter.setdefault("explode", True)
    return subset


def read_spec(raw: bytes, name: str) -> dict[str, Any]:
    """A spec document from its bytes: JSON if `name` ends in .json, YAML otherwise."""
    if name.endswith(".json"):
        parsed: dict[str, Any] = json.loads(raw)
        return parsed
    import yaml  # only for YAML: parsing it is the slow part

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        loaded: dict[str, Any] = yaml.load(raw, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {exc}") from exc
    return loaded


def load_pruned_spec(spec_path: Path) -> dict[str, Any]:
    try:
        raw = spec_path.read_bytes()
    except OSError as exc:
        raise RuntimeError(
            f"the Segment Public API spec is not readable at {spec_path} ({exc.strerror}); "
            f"pass --spec PATH or set {SPEC_PATH_ENV}"
        ) from exc
    # The operations are part of the key: a route added to the emulator invalidates the cache.
    key = raw + PRUNE_VERSION.encode() + repr(SPEC_OPERATIONS).encode()
    digest = hashlib.sha256(key).hexdigest()[:24]
    cache = Path(tempfile.gettempdir()) / f"sandbox-segment-spec-{digest}.json"
    try:
        cached: dict[str, Any] = json.loads(cache.read_text(encoding="utf-8"))
        return cached
    except (OSError, ValueError):
        pass
    try:
        pruned = normalise(extract_subset(read_spec(raw, spec_path.name)))
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(
            f"{spec_path} is not a Segment Public API OpenAPI document with the operations "
            f"the emulator serves: {exc}"
        ) from exc
    partial = cache.with_suffix(f".{os.getpid()}.tmp")
    try:
        partial.write_text(json.dumps(pruned), encoding="utf-8")
        partial.replace(cache)  # atomic: concurrent starts never read half a file
    except OSError:
        pass
    return pruned


@dataclass
class SpecRequest:
    """openapi-core's Request protocol over the emulator's view of a request."""

    method: str
    path: str
    body: bytes | None
    content_type: str
    parameters: Any
    host_url: str = SPEC_HOST_URL


@dataclass
class _Response:
    status_code: int
    data: bytes | None
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)


def _describe(error: BaseException) -> str:
    """One line per violation, naming the field: what a client author needs to fix it."""
    parts = [str(error).split(":")[0] if getattr(error, "__cause__", None) else str(error)]
    cause = error.__cause__
    schema_errors = getattr(cause, "schema_errors", None)
    if schema_errors:
        for schema_error in schema_errors:
            location = "/".join(str(p) for p in getattr(schema_error, "absolute_path", []))
            message = getattr(schema_error, "message", str(schema_error))
            parts.append(f"{message} (at {location or '<root>'})")
    elif cause is not None:
        inner = cause.__cause__
        parts.append(str(cause) + (f": {inner}" if inner is not None else ""))
    name = getattr(error, "name", None)
    if name and name not in parts[0]:
        parts[0] = f"{parts[0]} '{name}'"
    return ": ".join(parts)


class SegmentSpec:
    """Validates requests and responses of the served operations."""

    def __init__(self, pruned: dict[str, Any]) -> None:
        from openapi_core import Config, OpenAPI

        deserializers: dict[str, Callable[[bytes], Any]] = {
            media: json.loads for media in SEGMENT_MEDIA_TYPES
        }
        config = Config(spec_validator_cls=None, extra_media_type_deserializers=deserializers)
        self.document = pruned
        self.api = OpenAPI.from_dict(pruned, config=config)

    def request_media_types(self, template: str, method: str) -> list[str]:
        operation = self.document["paths"][template][method.lower()]
        return list(operation.get("requestBody", {}).get("content", {}).keys())

    def response_media_types(self, template: str, method: str, status: int) -> list[str]:
        operation = self.document["paths"][template][method.lower()]
        response = operation["responses"].get(str(status), {})
        return list(response.get("content", {}).keys())

    def declares_status(self, template: str, method: str, status: int) -> bool:
        return str(status) in self.document["paths"][template][method.lower()]["responses"]

    @staticmethod
    def request(
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
        content_type: str,
    ) -> SpecRequest:
        """A request as the validator reads it: build it once, check it and its response."""
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        parameters = RequestParameters(
            query=ImmutableMultiDict(query), header=Headers(list(headers.items()))
        )
        return SpecRequest(method.lower(), path, body or None, content_type, parameters)

    def request_violations(self, request: SpecRequest) -> list[str]:
        # Validation only: unmarshalling would build Python objects we never use (~30x slower).
        return [_describe(error) for error in self.api.iter_request_errors(request)]

    def response_violations(
        self,
        request: SpecRequest,
        status: int,
        response_body: bytes,
        response_content_type: str,
    ) -> list[str]:
        response = _Response(status, response_body, response_content_type)
        return [_describe(error) for error in self.api.iter_response_errors(request, response)]


@functools.lru_cache(maxsize=4)
def load_spec(spec_path: str | None = None) -> SegmentSpec:
    """The validator for a spec file, built once per process and shared by every emulator."""
    path = Path(spec_path or os.environ.get(SPEC_PATH_ENV) or SHIPPED_SPEC_PATH)
    return SegmentSpec(load_pruned_spec(path))
