"""Validation of the Segment emulator's Public API traffic against the official OpenAPI spec.

The spec file is 1.6 MB of YAML: parsing it takes ~0.8 s and openapi-core's own check of the
whole document ~2.5 s more. To start in well under 2 s the emulator

- keeps only the operations it serves and the schemas they reach (`prune_spec`), unchanged;
- caches that pruned document as JSON in the temp directory, keyed by the SHA-256 of the spec
  file and `PRUNE_VERSION`, so only the first start on a machine parses YAML;
- skips openapi-core's spec-document check (the official file is not ours to fix), and
- builds the `OpenAPI` object once per process (`load_spec`), reusing its validators, and
- validates without unmarshalling (building Python objects from every body is ~15x slower).

The spec is `../shared/reference/segment-public-api-openapi-v36.2.0.yaml` next to the repo,
or wherever `SANDBOX_SEGMENT_SPEC` (or the emulator's `--spec`) points.

One normalisation: the spec declares `pagination` as `style: deepObject` without
`explode: true`; OpenAPI's default `explode` is false for non-form styles, for which
openapi-core has no deepObject reader, yet the real API reads `pagination[count]=…`.
`prune_spec` sets `explode: true` on deepObject parameters so the spec means what the API does.
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

DEFAULT_SPEC_PATH = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "reference"
    / "segment-public-api-openapi-v36.2.0.yaml"
)
SPEC_PATH_ENV = "SANDBOX_SEGMENT_SPEC"
PRUNE_VERSION = "2"
SPEC_HOST_URL = "https://api.segmentapis.com"

MEDIA_V1 = "application/vnd.segment.v1+json"
MEDIA_V1BETA = "application/vnd.segment.v1beta+json"
MEDIA_V1ALPHA = "application/vnd.segment.v1alpha+json"
SEGMENT_MEDIA_TYPES = (MEDIA_V1, MEDIA_V1BETA, MEDIA_V1ALPHA)

SERVED_PATHS = (
    "/sources",
    "/sources/{sourceId}",
    "/sources/{sourceId}/connected-destinations",
    "/destinations",
    "/destinations/{destinationId}",
    "/destinations/{destinationId}/subscriptions",
    "/destinations/{destinationId}/subscriptions/{id}",
    "/catalog/sources/{sourceMetadataId}",
    "/catalog/destinations/{destinationMetadataId}",
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


def _explode_deep_objects(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        if isinstance(parameter, dict) and parameter.get("style") == "deepObject":
            parameter.setdefault("explode", True)


def prune_spec(spec: Mapping[str, Any], paths: tuple[str, ...] = SERVED_PATHS) -> dict[str, Any]:
    """The spec restricted to `paths` and the component schemas they reach, otherwise as is."""
    kept_paths = {path: json.loads(json.dumps(spec["paths"][path])) for path in paths}
    for item in kept_paths.values():
        for operation in item.values():
            if isinstance(operation, dict):
                _explode_deep_objects(operation)
    schemas = spec["components"]["schemas"]
    needed: set[str] = set()
    todo = list(_refs(kept_paths))
    while todo:
        name = todo.pop().rsplit("/", 1)[1]
        if name not in needed:
            needed.add(name)
            todo.extend(_refs(schemas[name]))
    return {
        "openapi": spec["openapi"],
        "info": spec["info"],
        "servers": spec["servers"],
        "security": spec.get("security", []),
        "paths": kept_paths,
        "components": {
            "securitySchemes": spec["components"].get("securitySchemes", {}),
            "schemas": {name: schemas[name] for name in sorted(needed)},
        },
    }


def load_pruned_spec(spec_path: Path) -> dict[str, Any]:
    try:
        raw = spec_path.read_bytes()
    except OSError as exc:
        raise RuntimeError(
            f"the Segment Public API spec is not readable at {spec_path} ({exc.strerror}); "
            f"pass --spec PATH or set {SPEC_PATH_ENV}"
        ) from exc
    digest = hashlib.sha256(raw + PRUNE_VERSION.encode()).hexdigest()[:24]
    cache = Path(tempfile.gettempdir()) / f"sandbox-segment-spec-{digest}.json"
    try:
        cached: dict[str, Any] = json.loads(cache.read_text(encoding="utf-8"))
        return cached
    except (OSError, ValueError):
        pass
    import yaml  # only on a cold cache: YAML parsing is the slow part

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    pruned = prune_spec(yaml.load(raw, Loader=loader))  # noqa: S506 - a safe loader
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
    path = Path(spec_path or os.environ.get(SPEC_PATH_ENV) or DEFAULT_SPEC_PATH)
    return SegmentSpec(load_pruned_spec(path))
