"""One version, written once in VERSION: every place that reports it says the same."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

import bridge_code
from components import api_http
from components.aws.packaging import build_bridge_zip
from components.version import VERSION, VersionError, read_version

ROOT = Path(__file__).resolve().parents[2]


def test_the_version_file_holds_one_semver_line() -> None:
    # GIVEN the root VERSION file  THEN it is one MAJOR.MINOR.PATCH line, as the code reads it
    text = (ROOT / "VERSION").read_text()
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+\n", text)
    assert text.strip() == VERSION


@pytest.mark.parametrize("content", ["", "0.2\n", "v0.2.0\n", "0.2.0\n0.3.0\n"])
def test_a_bad_version_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "VERSION"
    path.write_text(content)
    with pytest.raises(VersionError, match=r"MAJOR\.MINOR\.PATCH"):
        read_version(path)


def test_a_missing_version_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(VersionError, match="cannot read"):
        read_version(tmp_path / "VERSION")


def test_the_changelog_has_a_section_for_this_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(VERSION)}\]", changelog, re.MULTILINE)


def test_the_providers_user_agent_carries_it() -> None:
    client = api_http.HttpClient("Segment Public API", "https://api.segmentapis.com", "t", {})
    try:
        agent = str(client._session().headers["User-Agent"])
    finally:
        client.close()
    assert agent.startswith(f"userflow-segment-pulumi/{VERSION} ")


@pytest.mark.parametrize("cli", ["sandbox", "ops"])
def test_each_cli_prints_it(cli: str) -> None:
    out = subprocess.run([sys.executable, "-m", cli, "--version"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["userflow-segment", VERSION]


def test_the_local_bridge_health_reports_it() -> None:
    # GIVEN `python -m sandbox bridge` running (no secrets: /health answers all the same)
    bridge = subprocess.Popen([sys.executable, "-m", "sandbox", "bridge", "--port", "0"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    try:
        assert bridge.stdout is not None
        ready = bridge.stdout.readline().split()
        assert ready[:2] == ["READY", "bridge"], f"the local bridge did not start: {ready}"
        # WHEN /health is asked  THEN it reports the version
        health = requests.get(ready[2] + "/health", timeout=10).json()
    finally:
        bridge.terminate()
        bridge.wait(timeout=30)
    assert health["version"] == VERSION == bridge_code.VERSION


def test_the_lambda_zip_carries_it_and_the_bridge_reads_it_from_there(tmp_path: Path) -> None:
    # GIVEN the Lambda zip unpacked where no repository surrounds it
    data = build_bridge_zip(ROOT / "bridge_code", ROOT / "bridge_code" / "mapping.yaml")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(tmp_path)
    assert not (tmp_path / "VERSION").exists()
    # WHEN the bridge package is imported from it, as Lambda does
    script = "import bridge_code; print(bridge_code.__file__); print(bridge_code.VERSION)"
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={},
                         capture_output=True, text=True, check=True)
    # THEN it is that copy, and it reports the version
    where, reported = out.stdout.split()
    assert Path(where).is_relative_to(tmp_path)
    assert reported == VERSION
