"""Packages `bridge_code/` into the Lambda zip: deterministic bytes, no third-party code.

Same inputs give the same bytes (sorted entries, fixed timestamps and permissions, fixed
compression), so the archive's hash only moves when the code or the mapping does and a
preview shows no spurious diff. The IaC never imports the bridge: it only reads its files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.version import VERSION

# The bridge issue's budget for the zip (boto3 comes with the runtime, so nothing else ships).
MAX_ZIP_BYTES = 2 * 1024 * 1024
PACKAGE = "bridge_code"
HANDLER_MODULES = ("ingest.py", "delivery.py")
# 1980-01-01 is the earliest timestamp a zip entry can hold.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
UNIX = 3


class PackagingError(RuntimeError):
    """The bridge cannot be packaged (missing handler, bad mapping, over budget)."""


@dataclass(frozen=True)
class BridgeArchive:
    """A built Lambda zip on disk."""

    path: Path
    sha256: str
    size: int


def collect_sources(package_dir: Path) -> dict[str, bytes]:
    """Every `*.py` under the package, keyed by its path inside the zip."""
    files: dict[str, bytes] = {}
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir)
        if "__pycache__" in relative.parts:
            continue
        files[f"{PACKAGE}/{relative.as_posix()}"] = path.read_bytes()
    missing = [m for m in HANDLER_MODULES if f"{PACKAGE}/{m}" not in files]
    if missing:
        raise PackagingError(f"{package_dir}: handler module(s) missing: {', '.join(missing)}")
    return files


def mapping_json(mapping_yaml: Path) -> bytes:
    """The mapping file as the bridge reads it on Lambda (JSON: no PyYAML in the runtime)."""
    try:
        document = yaml.safe_load(mapping_yaml.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise PackagingError(f"{mapping_yaml}: not valid YAML ({error})") from None
    if not isinstance(document, dict):
        raise PackagingError(f"{mapping_yaml}: must hold a mapping at the top level")
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A zip of `files` that depends on nothing but their names and contents."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = UNIX
            info.external_attr = (0o100000 | FILE_MODE) << 16
            archive.writestr(info, files[name], compresslevel=9)
    return buffer.getvalue()


def build_bridge_zip(package_dir: Path, mapping_yaml: Path) -> bytes:
    """The Lambda zip's bytes: the bridge's modules plus `bridge_code/mapping.json`."""
    files = collect_sources(package_dir)
    files[f"{PACKAGE}/mapping.json"] = mapping_json(mapping_yaml)
    files[f"{PACKAGE}/VERSION"] = f"{VERSION}\n".encode()  # bridge_code/__init__.py reads it
    data = zip_bytes(files)
    if len(data) > MAX_ZIP_BYTES:
        raise PackagingError(f"bridge zip is {len(data)} bytes, over the {MAX_ZIP_BYTES} budget")
    return data


def write_bridge_archive(package_dir: Path, mapping_yaml: Path, out_dir: Path) -> BridgeArchive:
    """Build the zip and store it under a content-addressed name (stacks built side by side
    never overwrite each other's file, and an unchanged build rewrites nothing)."""
    data = build_bridge_zip(package_dir, mapping_yaml)
    digest = hashlib.sha256(data).hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bridge-{digest[:16]}.zip"
    if not path.exists() or path.read_bytes() != data:
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(data)
        temporary.replace(path)
    return BridgeArchive(path=path, sha256=digest, size=len(data))
