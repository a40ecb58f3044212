"""Our users' GitHub Actions workflow: linted by actionlint and shaped as the README says."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "pulumi.yml"
ACTIONLINT = ROOT / ".tools" / "bin" / "actionlint"


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    assert ACTIONLINT.exists(), "actionlint is missing: run `make setup`"
    return subprocess.run([str(ACTIONLINT), "-no-color", str(path)],
                          capture_output=True, text=True, check=False)


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def test_actionlint_accepts_the_workflow() -> None:
    result = actionlint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_would_catch_a_broken_workflow(tmp_path: Path) -> None:
    # GIVEN the same workflow with a job depending on one that does not exist
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(WORKFLOW.read_text().replace("needs: staging", "needs: stagign"))
    # THEN the linter fails it, naming the problem
    result = actionlint(broken)
    assert result.returncode != 0
    assert "stagign" in result.stdout


def test_previews_both_stacks_on_pull_requests() -> None:
    preview = load()["jobs"]["preview"]
    assert "pull_request" in preview["if"]
    assert preview["strategy"]["matrix"]["stack"] == ["staging", "production"]
    commands = [s.get("run", "") for s in preview["steps"]]
    assert any(c.startswith("pulumi preview") for c in commands)


def test_production_waits_for_staging_and_a_manual_approval() -> None:
    jobs = load()["jobs"]
    assert "refs/heads/main" in jobs["staging"]["if"]
    assert jobs["production"]["needs"] == "staging"
    # The approval is the GitHub environment's required reviewers.
    assert jobs["production"]["environment"] == "production"
    staging_runs = " ".join(s.get("run", "") for s in jobs["staging"]["steps"])
    assert "pulumi up" in staging_runs and "sandbox verify" in staging_runs


def test_no_secret_is_written_inline() -> None:
    text = WORKFLOW.read_text()
    # Every credential is a reference to the repository's secrets.
    for key in ("SEGMENT_TOKEN", "USERFLOW_API_KEY", "PULUMI_ACCESS_TOKEN"):
        for line in text.splitlines():
            if re.match(rf"\s*{key}:", line):
                assert "${{ secrets." in line, line
    assert not re.search(r"ak_[A-Za-z0-9]{6,}", text)
