"""Every command in docs/operations.md's runbooks is run by a test (against the sandbox, with
the real engine where it is a Pulumi command), so a runbook cannot drift into commands nothing
exercises. A command is known by its program and verb; each verb names the test that runs it
and a piece of that test's text that shows it does."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "docs" / "operations.md"

# Plain shell the runbooks use around our commands: not ours to test.
SHELL = {"git", "cp"}

# verb -> (test file, text in it that runs that verb)
RUN_BY: dict[str, tuple[str, str]] = {
    "pulumi stack select": ("tests/engine/test_stack_file.py", '"stack", "select", "--create"'),
    "pulumi stack rm": ("tests/engine/test_stack_file.py", '"stack", "rm", "--preserve-config"'),
    "pulumi stack output": ("tests/engine/test_lifecycle.py", "engine.outputs("),
    "pulumi config set": ("tests/e2e/test_rotation.py", '"config", "set"'),
    "pulumi preview": ("tests/engine/test_lifecycle.py", 'sandbox.run("preview")'),
    "pulumi up": ("tests/engine/test_lifecycle.py", 'sandbox.run("up")'),
    "pulumi destroy": ("tests/engine/test_lifecycle.py", ".destroy("),
    "make setup": ("tests/foundation/test_toolchain.py", "setup"),
    "make verify": ("tests/e2e/test_verify.py", "verify.main("),
    "python -m bridge_code.replay": ("tests/bridge/test_local_bridge.py", '"bridge_code.replay"'),
}


def runbook_commands(text: str) -> list[str]:
    """The commands in the runbooks' code blocks, comments and blank lines left out."""
    commands, inside = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        command = line.split(" #")[0].strip()
        if inside and command and not command.startswith("#"):
            commands.append(command)
    return commands


def verb(command: str) -> str:
    words = shlex.split(re.sub(r"\$\([^)]*\)", "X", command).replace("<", "").replace(">", ""))
    program = words[0]
    if program in SHELL:
        return program
    if program == "pulumi":
        rest = [w for w in words[1:] if not w.startswith("-")]
        return " ".join(["pulumi", *rest[:2]] if rest[0] in {"stack", "config"} else
                        ["pulumi", rest[0]])
    if program == "make":
        return f"make {words[1]}"
    if program == "python" and words[1] == "-m":
        return f"python -m {words[2]}"
    return program


def test_the_runbooks_have_commands() -> None:
    assert len(runbook_commands(RUNBOOKS.read_text(encoding="utf-8"))) >= 20


@pytest.mark.parametrize("command", runbook_commands(RUNBOOKS.read_text(encoding="utf-8")))
def test_each_runbook_command_is_run_by_a_test(command: str) -> None:
    kind = verb(command)
    if kind in SHELL:
        return
    assert kind in RUN_BY, f"{command!r}: no test runs `{kind}` (add one, then name it here)"
    path, evidence = RUN_BY[kind]
    assert evidence in (ROOT / path).read_text(encoding="utf-8"), f"{path} no longer runs {kind}"


def test_make_verify_runs_the_command_the_test_runs() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^verify:.*\n\t\$\(PY\) -m ops verify ", makefile, re.M)


def test_an_unknown_command_would_be_caught() -> None:
    assert verb("pulumi refresh --stack staging") not in RUN_BY
    assert verb("pulumi stack select --create staging") == "pulumi stack select"
    assert verb('python -m bridge_code.replay --dlq-url "$(pulumi stack output x)"') in RUN_BY
