"""The Lambda zip: deterministic bytes, the bridge's modules plus mapping.json, within budget."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from components.aws.packaging import (
    FIXED_DATE_TIME,
    MAX_ZIP_BYTES,
    PackagingError,
    build_bridge_zip,
    write_bridge_archive,
)

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = ROOT / "bridge_code"
MAPPING = BRIDGE / "mapping.yaml"


def fake_bridge(tmp_path: Path) -> Path:
    package = tmp_path / "bridge_code"
    (package / "sub").mkdir(parents=True)
    (package / "__pycache__").mkdir()
    for name, text in {"__init__.py": "", "ingest.py": "def handler(e, c): ...\n",
                       "delivery.py": "def handler(e, c): ...\n", "sub/x.py": "X = 1\n"}.items():
        (package / name).write_text(text)
    (package / "__pycache__" / "ingest.cpython-311.pyc").write_bytes(b"\0junk")
    (package / "notes.txt").write_text("not shipped")
    (package / "mapping.yaml").write_text("b: 1\na: [x, y]\n")
    return package


def entries(data: bytes) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: info for info in archive.infolist()}


def test_the_real_bridge_packs_within_budget_with_its_handlers_and_mapping() -> None:
    data = build_bridge_zip(BRIDGE, MAPPING)
    assert len(data) <= MAX_ZIP_BYTES == 2 * 1024 * 1024
    names = entries(data)
    assert {"bridge_code/ingest.py", "bridge_code/delivery.py", "bridge_code/__init__.py",
            "bridge_code/mapping.json"} <= set(names)
    # Only the bridge's own modules and its mapping: no third-party package, no YAML.
    assert all(n.startswith("bridge_code/") for n in names)
    assert all(n.endswith(".py") or n in {"bridge_code/mapping.json", "bridge_code/VERSION"}
               for n in names)
    expected_py = {f"bridge_code/{p.relative_to(BRIDGE).as_posix()}" for p in BRIDGE.rglob("*.py")
                   if "__pycache__" not in p.parts}
    assert {n for n in names if n.endswith(".py")} == expected_py
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        shipped = json.loads(archive.read("bridge_code/mapping.json"))
    assert shipped == yaml.safe_load(MAPPING.read_text())


def test_the_real_bridge_builds_to_the_same_bytes_twice() -> None:
    first = hashlib.sha256(build_bridge_zip(BRIDGE, MAPPING)).hexdigest()
    second = hashlib.sha256(build_bridge_zip(BRIDGE, MAPPING)).hexdigest()
    assert first == second


def test_timestamps_permissions_and_copy_location_do_not_change_the_bytes(tmp_path: Path) -> None:
    # GIVEN two copies of the same sources, one with new mtimes and other file modes
    first = fake_bridge(tmp_path / "one")
    second = tmp_path / "two" / "bridge_code"
    shutil.copytree(first, second)
    for path in second.rglob("*"):
        if path.is_file():
            os.utime(path, (1_700_000_000, 1_700_000_000))
            path.chmod(0o600)
    # WHEN both are packed THEN the zips are identical, with fixed metadata per entry
    one = build_bridge_zip(first, first / "mapping.yaml")
    two = build_bridge_zip(second, second / "mapping.yaml")
    assert one == two
    for info in entries(one).values():
        assert info.date_time == FIXED_DATE_TIME
        assert (info.external_attr >> 16) & 0o777 == 0o644


def test_entries_are_sorted_and_caches_and_other_files_are_left_out(tmp_path: Path) -> None:
    package = fake_bridge(tmp_path)
    names = list(entries(build_bridge_zip(package, package / "mapping.yaml")))
    assert names == sorted(names)
    assert names == ["bridge_code/VERSION", "bridge_code/__init__.py", "bridge_code/delivery.py",
                     "bridge_code/ingest.py", "bridge_code/mapping.json", "bridge_code/sub/x.py"]


def test_a_code_change_changes_the_bytes(tmp_path: Path) -> None:
    package = fake_bridge(tmp_path)
    before = build_bridge_zip(package, package / "mapping.yaml")
    (package / "delivery.py").write_text("def handler(e, c): return 1\n")
    assert build_bridge_zip(package, package / "mapping.yaml") != before


def test_mapping_json_is_sorted_so_key_order_in_yaml_does_not_matter(tmp_path: Path) -> None:
    package = fake_bridge(tmp_path)
    other = tmp_path / "reordered.yaml"
    other.write_text("a: [x, y]\nb: 1\n")
    assert build_bridge_zip(package, package / "mapping.yaml") == build_bridge_zip(package, other)


def test_a_missing_handler_module_fails_the_build(tmp_path: Path) -> None:
    package = fake_bridge(tmp_path)
    (package / "delivery.py").unlink()
    with pytest.raises(PackagingError, match=r"delivery\.py"):
        build_bridge_zip(package, package / "mapping.yaml")


def test_a_mapping_that_is_not_a_yaml_mapping_fails_the_build(tmp_path: Path) -> None:
    package = fake_bridge(tmp_path)
    (package / "mapping.yaml").write_text("- just\n- a list\n")
    with pytest.raises(PackagingError, match="mapping"):
        build_bridge_zip(package, package / "mapping.yaml")


def test_over_budget_code_fails_the_build(tmp_path: Path) -> None:
    package = fake_bridge(tmp_path)
    # Random bytes do not compress: 3 MB of them (as base64 text) cannot fit in 2 MB.
    (package / "big.py").write_text(base64.b64encode(os.urandom(3 * 1024 * 1024)).decode())
    with pytest.raises(PackagingError, match="budget"):
        build_bridge_zip(package, package / "mapping.yaml")


def test_the_archive_file_is_content_addressed_and_stable(tmp_path: Path) -> None:
    package = fake_bridge(tmp_path)
    first = write_bridge_archive(package, package / "mapping.yaml", tmp_path / "out")
    second = write_bridge_archive(package, package / "mapping.yaml", tmp_path / "out")
    assert first == second
    assert first.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()
    assert first.sha256[:16] in first.path.name
    assert first.size == first.path.stat().st_size


# What the Lambda Python runtime provides besides the standard library: boto3 and its deps.
LAMBDA_RUNTIME_PACKAGES = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3",
                           "six"}
IMPORT_CHECK = """
import json, sys
sys.path.insert(0, sys.argv[1])
sys.modules["yaml"] = None  # not in the Lambda runtime: the zip must not need it
import bridge_code.delivery, bridge_code.ingest, bridge_code.mapping as mapping
path = mapping.default_mapping_path()
mapping.read_mapping_file(path)
print(json.dumps({
    "mapping": str(path),
    "handlers": [callable(bridge_code.ingest.handler), callable(bridge_code.delivery.handler)],
    "from_zip": mapping.__file__.startswith(sys.argv[1]),
    "top_level": sorted({m.split(".")[0] for m, mod in sys.modules.items() if mod is not None}),
}))
"""


def test_the_unzipped_bridge_imports_alone_and_reads_its_packaged_mapping(
    tmp_path: Path,
) -> None:
    # GIVEN the zip unpacked where Lambda would (no repository on the path, no PyYAML)
    with zipfile.ZipFile(io.BytesIO(build_bridge_zip(BRIDGE, MAPPING))) as archive:
        archive.extractall(tmp_path / "task")
    # WHEN both handlers are imported in a fresh, isolated interpreter
    result = subprocess.run(
        [sys.executable, "-I", "-c", IMPORT_CHECK, str(tmp_path / "task")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # THEN they come from the zip, read mapping.json, and need nothing but the runtime's own
    assert report["from_zip"] and report["handlers"] == [True, True]
    assert report["mapping"] == str(tmp_path / "task" / "bridge_code" / "mapping.json")
    third_party = {name for name in report["top_level"]
                   if name not in sys.stdlib_module_names and not name.startswith("_")}
    assert third_party <= LAMBDA_RUNTIME_PACKAGES | {"bridge_code"}
