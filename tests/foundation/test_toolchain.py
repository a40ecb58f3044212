"""The toolchain the README promises: the pinned engine, one release for CLI and SDK."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from importlib.metadata import version
from pathlib import Path

import pytest

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


# --- setup: make help, what the demo needs, progress --------------------------------------

SCRIPTS = ROOT / "scripts"
# The few tools the setup scripts call, so a test can run them with a PATH that lacks Go.
BASIC_TOOLS = ("bash", "dirname", "head", "tail", "cat", "mkdir", "ln", "touch", "sleep",
               "grep", "sed", "rm", "paste", "mktemp", "tr", "wc")


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT,
                          capture_output=True, text=True, check=True)


def test_make_alone_lists_every_target_with_a_line_of_text() -> None:
    # GIVEN the Makefile's phony targets  WHEN `make` runs with no goal
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert phony, "the Makefile declares no .PHONY targets"
    listed = {m.group(1): m.group(2) for m in
              re.finditer(r"^  make (\S+) +(.+)$", make().stdout, re.MULTILINE)}
    # THEN each has its line, with some text
    assert set(phony.group(1).split()) == set(listed)
    assert all(len(text.split()) >= 3 for text in listed.values()), listed


def test_the_demo_needs_no_actionlint_and_the_tests_do() -> None:
    # `make -n` prints the recipes a goal would run, without running them.
    assert "scripts/setup.sh dev" not in make("-n", "demo").stdout
    assert "scripts/setup.sh dev" in make("-n", "test").stdout


def path_without_go(tmp_path: Path, *extra: tuple[str, str]) -> str:
    """A PATH holding only the basic tools (and `extra` (name, script) pairs): no Go."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in BASIC_TOOLS:
        found = shutil.which(name)
        assert found, f"{name} is not installed"
        (tools / name).symlink_to(found)
    for name, script in extra:
        (tools / name).write_text(script)
        (tools / name).chmod(0o755)
    return str(tools)


def copy_of_the_scripts(tmp_path: Path) -> Path:
    """The setup scripts in a repository of their own, so nothing touches the real .tools."""
    root = tmp_path / "repo"
    shutil.copytree(SCRIPTS, root / "scripts")
    return root


def run_bash(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], **env}, timeout=60)


def test_a_failing_step_stops_at_once_and_shows_where_its_log_is(tmp_path: Path) -> None:
    # GIVEN a step whose first command fails (bash ignores `set -e` inside `||` and `if`:
    # the step must not go on to its next command)
    script = f""". {SCRIPTS}/progress.sh
step() {{ echo "fetching"; false; touch {tmp_path}/went-on; }}
run_step "demo step" demo no_detail step
echo unreachable"""
    # WHEN it runs
    result = run_bash(script, tmp_path, SETUP_LOGS=str(tmp_path / "logs"))
    # THEN the step and the script stop with the failure, and say where the log is, with its tail
    assert result.returncode == 1
    assert not (tmp_path / "went-on").exists() and "unreachable" not in result.stdout
    log = tmp_path / "logs" / "demo.log"
    assert f"demo step failed after 0s (exit 1); the last 25 lines of {log}:" in result.stderr
    assert "    fetching" in result.stderr


def test_a_long_step_has_a_heartbeat_and_says_how_long_it_took(tmp_path: Path) -> None:
    # GIVEN a 3 s step whose probe reads its log, with a heartbeat every second
    script = f""". {SCRIPTS}/progress.sh
probe() {{ echo "$(wc -l < "$1" | tr -d ' ') lines logged"; }}
step() {{ for i in 1 2 3; do echo "line $i"; sleep 1; done; }}
run_step "slow step" slow probe step"""
    summary = tmp_path / "summary"
    result = run_bash(script, tmp_path, SETUP_LOGS=str(tmp_path / "logs"),
                      SETUP_HEARTBEAT_S="1", SETUP_SUMMARY=str(summary))
    assert result.returncode == 0, result.stderr
    # THEN its output stays in the log, and the terminal gets heartbeats and the time taken
    assert "line 1" not in result.stderr
    assert (tmp_path / "logs" / "slow.log").read_text() == "line 1\nline 2\nline 3\n"
    beats = re.findall(r"^\[setup\]   slow step: (\d+)s elapsed, (\d) lines logged$",
                       result.stderr, re.MULTILINE)
    assert beats, result.stderr
    assert re.search(r"^\[setup\]   slow step: done in [34]s$", result.stderr, re.MULTILINE)
    assert re.fullmatch(r"slow step [34]s\n", summary.read_text())


def test_ctrl_c_stops_the_step_and_its_heartbeat_at_once(tmp_path: Path) -> None:
    # GIVEN a long step running in its own process group (as under a terminal)
    script = f""". {SCRIPTS}/progress.sh
step() {{ sleep 30; }}
run_step "long step" long no_detail step"""
    setup = subprocess.Popen(["bash", "-c", script], start_new_session=True, text=True,
                             stderr=subprocess.PIPE, env={**os.environ,
                             "SETUP_LOGS": str(tmp_path), "SETUP_HEARTBEAT_S": "1"})
    time.sleep(1.5)
    # WHEN Ctrl-C reaches the group
    os.killpg(setup.pid, signal.SIGINT)
    _, err = setup.communicate(timeout=10)
    # THEN the script ends as interrupted, says where the log is, and leaves no process behind
    assert setup.returncode == 130
    log = re.escape(str(tmp_path / "long.log"))
    assert re.search(rf"long step interrupted after \d+s; its log so far: {log}$", err,
                     re.MULTILINE), err
    with pytest.raises(ProcessLookupError):
        os.killpg(setup.pid, 0)


def test_a_pulumi_on_path_is_used_without_go(tmp_path: Path) -> None:
    # GIVEN a user's own pulumi 3.x on PATH and no Go
    root = copy_of_the_scripts(tmp_path)
    theirs = "#!/bin/sh\necho v3.1.0\n"
    path = path_without_go(tmp_path, ("pulumi", theirs))
    dest = root / ".tools" / "pulumi"
    # WHEN the engine is ensured, twice, with our tools folder first on PATH (as make does)
    env = {"PATH": f"{dest}:{path}"}
    first = subprocess.run(["bash", str(root / "scripts" / "ensure-engine.sh")],
                           capture_output=True, text=True, env=env, timeout=60)
    again = subprocess.run(["bash", str(root / "scripts" / "ensure-engine.sh")],
                           capture_output=True, text=True, env=env, timeout=60)
    # THEN theirs is linked in, nothing is built, and the second run is silent
    assert first.returncode == 0, first.stderr
    assert "using pulumi v3.1.0 from PATH" in first.stderr
    assert (dest / "pulumi").resolve() == (Path(path) / "pulumi").resolve()
    assert again.returncode == 0 and again.stderr == ""


def test_our_own_half_built_engine_is_never_taken_for_the_users(tmp_path: Path) -> None:
    # GIVEN a CLI in our tools folder without its stamp (a build that stopped half way), first
    # on PATH as make puts it, and no other pulumi and no Go
    root = copy_of_the_scripts(tmp_path)
    dest = root / ".tools" / "pulumi"
    dest.mkdir(parents=True)
    (dest / "pulumi").write_text("#!/bin/sh\necho v3.260.0\n")
    (dest / "pulumi").chmod(0o755)
    result = subprocess.run(["bash", str(root / "scripts" / "ensure-engine.sh")],
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": f"{dest}:{path_without_go(tmp_path)}"})
    # THEN it is not linked to itself: the script asks for Go (or a pulumi 3.x) instead
    assert result.returncode == 1
    assert "no Go toolchain" in result.stderr
    assert not (dest / "pulumi").is_symlink()


def test_without_go_actionlint_says_the_demo_does_not_need_it(tmp_path: Path) -> None:
    root = copy_of_the_scripts(tmp_path)
    result = subprocess.run(["bash", str(root / "scripts" / "ensure-actionlint.sh")],
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": path_without_go(tmp_path)})
    assert result.returncode == 1
    assert "a Go toolchain" in result.stderr and "`make demo` runs without it" in result.stderr
