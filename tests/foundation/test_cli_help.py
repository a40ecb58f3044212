"""Every command-line flag of the project says in `--help` what it does.

Two ways, so neither a parser built in a helper nor a flag added on a branch not taken slips
through: the source of every module outside tests/ is read for `add_argument` and
`add_parser` calls without a `help=` text, and every command the repository ships is asked
for its parser (its `main(["--help"])`, stopped at `parse_args`), whose arguments are checked
one by one, including the ones helpers such as `add_server_arguments` add.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Not the project's code: the virtualenv, the engine, local state, and the tests themselves.
SKIPPED_DIRS = {".venv", ".tools", ".pulumi-state", "tests", "node_modules", "__pycache__"}
ARGUMENT_CALLS = {"add_argument", "add_parser"}
# argparse's own --help and --version carry their text already.
OWN_ACTIONS = (argparse._HelpAction, argparse._VersionAction)


def project_sources() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if not any(p in SKIPPED_DIRS or p.startswith(".") for p in parts[:-1]):
            yield path


def _is_empty_text(node: ast.expr) -> bool:
    """`help=None`, `help=""` or `help=argparse.SUPPRESS`: nothing shown in --help."""
    if isinstance(node, ast.Constant):
        return node.value is None or (isinstance(node.value, str) and not node.value.strip())
    return isinstance(node, ast.Attribute) and node.attr == "SUPPRESS"


def flags_without_help_in_source(source: str) -> list[str]:
    """`line: flags` of each argparse argument or sub-command the source declares without a
    help text (pure: the unit of the static half)."""
    missing: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ARGUMENT_CALLS):
            continue
        texts = [k.value for k in node.keywords if k.arg == "help"]
        if not texts or _is_empty_text(texts[0]):
            names = [a.value for a in node.args if isinstance(a, ast.Constant)]
            missing.append(f"{node.lineno}: {' '.join(map(str, names)) or '?'}")
    return missing


class _Captured(Exception):
    """Not an error: how the parser is taken out of `main` before it runs."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def _load(path: Path) -> ModuleType:
    """The module at `path`, under its dotted name when it is in a package, else by file."""
    relative = path.relative_to(ROOT).with_suffix("")
    if (ROOT / relative.parent / "__init__.py").is_file():
        return importlib.import_module(".".join(relative.parts))
    spec = importlib.util.spec_from_file_location(f"_cli_{relative.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def command_parser(path: Path, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser the command at `path` builds, taken at `parse_args` before it runs."""
    module = _load(path)

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Captured(self)

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", capture)
        patch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
        patch.setattr(sys, "path", list(sys.path))  # scripts add the repository to it
        try:
            module.main(["--help"])
        except _Captured as captured:
            return captured.parser
    raise AssertionError(f"{path.relative_to(ROOT)}: main() never parsed its arguments")


def arguments_without_help(parser: argparse.ArgumentParser) -> list[str]:
    """Each argument (and sub-command's argument) of `parser` whose help shows nothing."""
    missing: list[str] = []
    # argparse lists a parser's arguments nowhere public.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                missing += arguments_without_help(sub)
            continue
        if isinstance(action, OWN_ACTIONS):
            continue
        text = action.help
        if text is None or text == argparse.SUPPRESS or not str(text).strip():
            missing.append(f"{parser.prog}: {'/'.join(action.option_strings) or action.dest}")
    return missing


def cli_modules() -> list[Path]:
    """Every module outside tests/ that builds a parser in its `main`."""
    return [p for p in project_sources()
            if "ArgumentParser(" in (text := p.read_text(encoding="utf-8"))
            and "def main(" in text]


def test_the_static_check_sees_a_flag_without_help() -> None:
    source = (
        "import argparse\n"
        "p = argparse.ArgumentParser()\n"
        "p.add_argument('--fine', help='says what it does')\n"
        "p.add_argument('--bare', type=int)\n"
        "p.add_argument('--empty', help='')\n"
        "p.add_argument('--hidden', help=argparse.SUPPRESS)\n"
        "s = p.add_subparsers()\n"
        "s.add_parser('run')\n"
    )
    assert flags_without_help_in_source(source) == [
        "4: --bare", "5: --empty", "6: --hidden", "8: run"]


def test_the_parser_check_sees_an_argument_without_help() -> None:
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--fine", help="says what it does")
    parser.add_argument("--bare")
    parser.add_argument("path")
    parser.add_argument("--version", action="version", version="1")
    sub = parser.add_subparsers(dest="command", help="what to do")
    sub.add_parser("run", help="runs").add_argument("--hidden", help=argparse.SUPPRESS)
    # (argparse names a sub-command after the positionals before it)
    assert arguments_without_help(parser) == ["x: --bare", "x: path", "x path run: --hidden"]


def test_every_flag_in_the_source_has_help_text() -> None:
    missing = [f"{path.relative_to(ROOT)}:{entry}"
               for path in project_sources()
               for entry in flags_without_help_in_source(path.read_text(encoding="utf-8"))]
    assert missing == [], "flags without help text:\n" + "\n".join(missing)


def test_the_commands_are_found() -> None:
    # The parser check below is only as good as this list: the shipped commands are in it.
    found = {str(p.relative_to(ROOT)) for p in cli_modules()}
    assert {"sandbox/demo.py", "ops/verify.py", "sandbox/local_bridge.py",
            "sandbox/segment/server.py", "sandbox/userflow/server.py",
            "bridge_code/replay.py"} <= found


@pytest.mark.parametrize("path", cli_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_argument_of_every_command_has_help_text(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parser = command_parser(path, monkeypatch)
    assert arguments_without_help(parser) == []
