"""Fixtures: one in-process emulator per test on a free port, and a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.segment import SegmentEmulator
from sandbox.userflow import UserflowEmulator
from tests.emulators.helpers import FULL_SPEC_PATH
from tests.emulators.receiver import Receiver

# Every Segment test runs against the shipped subset (the default) and, when SEGMENT_FULL_SPEC
# names the full official document, against it too: the subset must not let through what the
# full document refuses.
SPEC_VARIANTS = {"shipped": None} | (
    {"full": str(FULL_SPEC_PATH)} if FULL_SPEC_PATH is not None else {}
)


@pytest.fixture(params=list(SPEC_VARIANTS))
def segment(request: pytest.FixtureRequest) -> Iterator[SegmentEmulator]:
    spec_path = SPEC_VARIANTS[request.param]
    # Short batch window and backoff: the compressed clock keeps delivery tests fast.
    with SegmentEmulator(
        batch_window_s=0.2, delivery_backoff_s=0.05, spec_path=spec_path
    ) as emulator:
        yield emulator
        # Every answer of every test was checked against the spec: none may have failed.
        assert emulator.state()["spec_violations"] == []


@pytest.fixture
def userflow() -> Iterator[UserflowEmulator]:
    with UserflowEmulator(delivery_backoff_s=0.05) as emulator:
        yield emulator


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running
