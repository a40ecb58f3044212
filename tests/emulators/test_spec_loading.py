"""The pruned, cached copy of the official Segment spec: complete for what the emulator
serves, faithful to the original, and safe to cache."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from sandbox.segment.spec import (
    DEFAULT_SPEC_PATH,
    SERVED_PATHS,
    load_pruned_spec,
    load_spec,
)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_pruned_spec_keeps_every_served_path_and_resolves_every_ref() -> None:
    pruned = load_spec().document

    assert set(pruned["paths"]) == set(SERVED_PATHS)
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
    first = load_pruned_spec(DEFAULT_SPEC_PATH)  # cold: parses the YAML, writes the cache
    [cache] = list(tmp_path.glob("sandbox-segment-spec-*.json"))
    cache.write_text("{not json", encoding="utf-8")

    second = load_pruned_spec(DEFAULT_SPEC_PATH)

    assert second == first
    assert json.loads(cache.read_text(encoding="utf-8")) == first


def test_a_missing_spec_says_how_to_point_at_it(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="SANDBOX_SEGMENT_SPEC"):
        load_pruned_spec(tmp_path / "nope.yaml")
