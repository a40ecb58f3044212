"""End-to-end tests run the real Pulumi engine; without it they fail (never skip) and say why."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.engine import EngineMissing, find_engine


@pytest.fixture(scope="session")
def engine_binary() -> Path:
    try:
        return find_engine()
    except EngineMissing as exc:
        pytest.fail(f"{exc}", pytrace=False)
