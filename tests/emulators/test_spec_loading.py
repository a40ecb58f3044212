"""The Segment spec the emulator validates against: the subset shipped in the repository is a
valid OpenAPI document holding every served operation and no documentation, it is exactly
what the extraction script makes of the official document, and loading it (or any other spec
given by `--spec`/`SANDBOX_SEGMENT_SPEC`) is cached safely."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from sandbox.segment.routes import SPEC_OPERATIONS
from sandbox.segment.spec import (
    SHIPPED_SPEC_PATH,
    SPEC_PATH_ENV,
    extract_subset,
    load_pruned_spec,
    load_spec,
)
from tests.emulators.helpers import FULL_SPEC_PATH

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "extract_segment_spec.py"
STATUS_PHRASES = {"OK", "Resource not found", "Validation failure", "Too many requests"}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def _keys_and_strings(node: Any, key: str = "") -> list[tuple[str, Any]]:
    """Every (key, value) pair in the document, depth first."""
    if isinstance(node, dict):
        return [(key, node)] + [p for k, v in node.items() for p in _keys_and_strings(v, k)]
    if isinstance(node, list):
        return [p for item in node for p in _keys_and_strings(item, key)]
    return [(key, node)]


def _shipped() -> dict[str, Any]:
    shipped: dict[str, Any] = json.loads(SHIPPED_SPEC_PATH.read_text(encoding="utf-8"))
    return shipped


def test_pruned_spec_keeps_every_served_operation_and_resolves_every_ref() -> None:
    pruned = load_spec().document

    served = {(m, path) for path, item in pruned["paths"].items() for m in item}
    assert served == set(SPEC_OPERATIONS)
    schemas = pruned["components"]["schemas"]
    for ref in _refs(pruned):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref


def test_deep_object_pagination_is_exploded_as_the_api_reads_it() -> None:
    pruned = load_spec().document

    parameter = next(
        p for p in pruned["paths"]["/sources"]["get"]["parameters"] if p["name"] == "pagination"
    )
    assert parameter["style"] == "deepObject" and parameter["explode"] is True


def test_a_corrupt_cache_is_ignored_and_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first = load_pruned_spec(SHIPPED_SPEC_PATH)  # cold: parses the file, writes the cache
    [cache] = list(tmp_path.glob("sandbox-segment-spec-*.json"))
    cache.write_text("{not json", encoding="utf-8")

    second = load_pruned_spec(SHIPPED_SPEC_PATH)

    assert second == first
    assert json.loads(cache.read_text(encoding="utf-8")) == first


def test_a_missing_spec_says_how_to_point_at_it(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="SANDBOX_SEGMENT_SPEC"):
        load_pruned_spec(tmp_path / "nope.yaml")


def test_a_file_that_is_not_the_spec_is_named_in_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    wrong = tmp_path / "other.yaml"
    wrong.write_text("openapi: 3.0.3\npaths: {}\n", encoding="utf-8")

    with pytest.raises(RuntimeError, match=r"other\.yaml is not a Segment Public API"):
        load_pruned_spec(wrong)


def test_the_shipped_subset_is_a_valid_openapi_document_pinned_to_36_2_0() -> None:
    shipped = _shipped()

    validate(shipped)  # raises on an invalid OpenAPI document
    assert shipped["info"]["version"] == "36.2.0"
    assert "scripts/extract_segment_spec.py" in shipped["info"]["description"]


def test_the_shipped_subset_holds_facts_not_documentation() -> None:
    shipped = _shipped()
    shipped_info = shipped.pop("info")

    pairs = _keys_and_strings(shipped)
    assert not [k for k, _ in pairs if k.startswith("x-")]
    assert not [k for k, _ in pairs if k in {"example", "examples", "summary"}]
    # The only descriptions left are response status phrases (OpenAPI requires them) and
    # properties that happen to be named `description` (schemas, not text).
    texts = {v for k, v in pairs if k == "description" and isinstance(v, str)}
    assert texts <= STATUS_PHRASES
    assert set(shipped_info) == {"title", "version", "description"}


def test_extracting_the_shipped_subset_again_changes_nothing() -> None:
    assert extract_subset(_shipped()) == _shipped()


def test_extraction_keeps_facts_and_drops_documentation() -> None:
    ref = {"$ref": "#/components/schemas/Thing"}
    official = {
        "openapi": "3.0.3",
        "info": {"title": "T", "version": "36.2.0", "x-logo": {"url": "u"}, "description": "d"},
        "servers": [{"url": "https://api.example", "description": "Production"}],
        "paths": {
            "/things": {
                "get": {
                    "summary": "List",
                    "description": "Lists things.",
                    "x-codeSamples": [],
                    "parameters": [{"name": "n", "in": "query", "example": 3}],
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {"application/json": {"schema": ref, "example": {}}},
                        }
                    },
                },
                "delete": {"responses": {"200": {"description": "OK"}}},
            },
            "/unused": {"get": {"responses": {}}},
        },
        "components": {
            "schemas": {
                "Thing": {
                    "description": "A thing.",
                    "properties": {"description": {"type": "string", "description": "Its text."}},
                    "default": {"description": "kept: a value, not documentation"},
                },
                "Unreachable": {"type": "object"},
            }
        },
    }

    subset = extract_subset(official, (("get", "/things"),))

    operation = subset["paths"]["/things"]["get"]
    assert list(subset["paths"]) == ["/things"] and list(subset["paths"]["/things"]) == ["get"]
    assert operation == {
        "parameters": [{"name": "n", "in": "query"}],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ref}}}
        },
    }
    assert subset["components"]["schemas"] == {
        "Thing": {
            "properties": {"description": {"type": "string"}},
            "default": {"description": "kept: a value, not documentation"},
        }
    }
    assert subset["servers"] == [{"url": "https://api.example"}]
    with pytest.raises(KeyError, match="POST /things"):
        extract_subset(official, (("post", "/things"),))


def test_the_script_refuses_another_version_of_the_spec(tmp_path: Path) -> None:
    other = tmp_path / "spec.yaml"
    other.write_text(yaml.safe_dump({"openapi": "3.0.3", "info": {"version": "37.0.0"}}))

    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(other), "--out", str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "37.0.0" in result.stderr and "36.2.0" in result.stderr
    assert not (tmp_path / "out.json").exists()


@pytest.mark.skipif(
    FULL_SPEC_PATH is None,
    reason="SEGMENT_FULL_SPEC names no copy of Segment's full spec (a plain clone has none): "
    "the shipped subset cannot be compared with its source here",
)
def test_the_shipped_subset_is_what_the_script_makes_of_the_official_spec() -> None:
    env = {k: v for k, v in os.environ.items() if k != SPEC_PATH_ENV}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(FULL_SPEC_PATH), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )

    assert result.returncode == 0, result.stderr
