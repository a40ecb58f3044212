"""Runs each stack's program once per distinct config (in its own interpreter, see
harness.py) and hands the recorded registrations to the tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.stacks.harness import ROOT

StackRun = dict[str, Any]
RunStack = Callable[..., StackRun]

PROGRAM_TIMEOUT_SECONDS = 120


@pytest.fixture(scope="session")
def run_stack(tmp_path_factory: pytest.TempPathFactory) -> RunStack:
    """`run_stack("staging", logRetentionDays="7")` -> the recorded run (cached per config)."""
    cache: dict[str, StackRun] = {}

    def run(stack: str, **overrides: str | None) -> StackRun:
        key = json.dumps([stack, overrides], sort_keys=True)
        if key not in cache:
            out = tmp_path_factory.mktemp("stack") / "run.json"
            subprocess.run(
                [sys.executable, "-m", "tests.stacks.harness", "--stack", stack,
                 "--out", str(out), "--overrides", json.dumps(overrides)],
                cwd=ROOT, check=True, timeout=PROGRAM_TIMEOUT_SECONDS,
                capture_output=True,
            )
            cache[key] = json.loads(Path(out).read_text())
        return cache[key]

    return run


def succeeded(run: StackRun) -> StackRun:
    """The run, or a test failure showing why the program failed."""
    assert "error" not in run, run.get("traceback")
    return run
