"""No module outside the tests grows past 600 lines: a reader opens one room at a time, and a
file that size holds more than one (issue 9). Split it where its concerns part."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 600


def tracked_modules() -> list[Path]:
    """Every Python file git tracks, outside `tests/`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", "*.py"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode("utf-8")
    return [ROOT / name for name in listed.split("\0")
            if name and not name.startswith("tests/")]


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def oversized(paths: list[Path], limit: int = MAX_LINES) -> list[str]:
    """`path: N lines` for each file over the limit, longest first."""
    counted = sorted(((line_count(p), p) for p in paths), reverse=True)
    return [f"{p.relative_to(ROOT)}: {n} lines" for n, p in counted if n > limit]


def test_the_modules_are_found() -> None:
    # GIVEN the repository WHEN its modules are listed THEN the big rooms are among them
    # (an empty list would make the size check below pass for nothing)
    names = {p.relative_to(ROOT).as_posix() for p in tracked_modules()}
    assert {"__main__.py", "components/config.py", "sandbox/emulator.py"} <= names
    assert not any(name.startswith("tests/") for name in names)


def test_no_module_outside_tests_is_over_600_lines() -> None:
    too_long = oversized(tracked_modules())
    assert not too_long, f"over {MAX_LINES} lines (split by concern): " + "; ".join(too_long)


def test_an_oversized_module_is_named_with_its_length() -> None:
    # GIVEN a module and a limit one line below its length
    module = ROOT / "__main__.py"
    length = line_count(module)
    # WHEN checked THEN the finding names the file and its length; at its length it passes
    assert oversized([module], length - 1) == [f"__main__.py: {length} lines"]
    assert oversized([module], length) == []
