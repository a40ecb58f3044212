"""Engine tests run the real Pulumi CLI; without it they fail (never skip) and say why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.engine import Engine, EngineMissing, find_engine


@pytest.fixture(scope="session")
def engine_binary() -> Path:
    try:
        return find_engine()
    except EngineMissing as exc:
        pytest.fail(f"{exc}", pytrace=False)


@pytest.fixture
def fresh_engine(engine_binary: Path, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty file backend of its own (a fresh clone's first run)."""
    yield Engine(state_dir=tmp_path / "state")
