"""The toolchain the README promises: the pinned engine, one release for CLI and SDK."""

from __future__ import annotations

import re
import subprocess
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / ".tools" / "pulumi"


def pinned_engine_version() -> str:
    script = (ROOT / "scripts" / "ensure-engine.sh").read_text()
    match = re.search(r'PULUMI_VERSION="\$\{PULUMI_VERSION:-([0-9.]+)\}"', script)
    assert match, "scripts/ensure-engine.sh no longer pins PULUMI_VERSION"
    return match.group(1)


def test_cli_and_python_sdk_are_the_same_release() -> None:
    # GIVEN the engine pin and the installed SDK  THEN they name one release
    assert version("pulumi") == pinned_engine_version()
    requirements = (ROOT / "requirements.txt").read_text()
    assert f"pulumi=={pinned_engine_version()}" in requirements


def test_engine_from_the_tools_folder_prints_the_pinned_version() -> None:
    # GIVEN `make setup` ran  WHEN `pulumi version` runs from the tools folder
    binary = ENGINE / "pulumi"
    assert binary.exists(), "the Pulumi engine is missing: run `make setup`"
    out = subprocess.run([str(binary), "version"], capture_output=True, text=True, check=True)
    # THEN it is the pinned release
    assert out.stdout.strip() == f"v{pinned_engine_version()}"


def test_the_engine_has_its_python_helpers_beside_it() -> None:
    # The language host and the dynamic-provider host are found next to the CLI.
    for name in ("pulumi-language-python", "pulumi-language-python-exec",
                 "pulumi-resource-pulumi-python"):
        path = ENGINE / name
        assert path.exists(), f"{name} missing from {ENGINE}: run `make setup`"
        assert path.stat().st_mode & 0o111, f"{name} is not executable"


def pins(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        if "==" in spec:
            name, pinned = spec.split("==", 1)
            found[re.sub(r"\[.*\]", "", name).strip().lower().replace("_", "-")] = pinned.strip()
    return found


def test_every_requirement_is_locked_at_its_pinned_version() -> None:
    # GIVEN the hand-pinned requirements and the full lock of what they resolve to
    required, locked = pins(ROOT / "requirements.txt"), pins(ROOT / "constraints.txt")
    # THEN the lock holds each requirement at the very same version
    mismatched = {name: (want, locked.get(name)) for name, want in required.items()
                  if locked.get(name) != want}
    assert not mismatched, f"regenerate constraints.txt (pip freeze): {mismatched}"
