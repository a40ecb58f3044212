"""This project's version, read from the root `VERSION` file: the one place it is written.

The bridge reads the same file (`bridge_code/__init__.py`: it cannot import this package), the
packager ships it inside the Lambda zip, and the providers' User-Agent and the CLIs report it.
"""

from __future__ import annotations

import re
from pathlib import Path

VERSION_FILE = Path(__file__).resolve().parents[1] / "VERSION"
# Semantic Versioning's MAJOR.MINOR.PATCH (https://semver.org), as CHANGELOG.md's headings use.
_SEMVER = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")


class VersionError(RuntimeError):
    """The VERSION file is missing or does not hold one MAJOR.MINOR.PATCH line."""


def read_version(path: Path = VERSION_FILE) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise VersionError(f"{path}: cannot read the project's version ({error})") from None
    if not _SEMVER.fullmatch(text):
        raise VersionError(f"{path}: expected one MAJOR.MINOR.PATCH line, got {text!r}")
    return text


VERSION = read_version()
