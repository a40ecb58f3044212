"""The one command dispatcher behind `python -m ops` and `python -m sandbox`.

Each command lives in its own module, imported only when chosen, so starting one process
never pays for loading the others (the Segment spec alone takes about a second).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping

from components.project import PROJECT
from components.version import VERSION

# name -> (module with `main(argv) -> int`, one line for the usage text)
Commands = Mapping[str, tuple[str, str]]


def usage(prog: str, commands: Commands) -> str:
    lines = [f"usage: {prog} <command> [options] | --version", "", "commands:"]
    lines += [f"  {name:<9} {summary}" for name, (_, summary) in commands.items()]
    return "\n".join(lines)


def dispatch(prog: str, commands: Commands, argv: list[str]) -> int:
    """Run the chosen command's `main` with the rest of `argv`; usage, version or an error
    for anything else."""
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage(prog, commands))
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"{PROJECT} {VERSION}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"unknown command {name!r}\n\n{usage(prog, commands)}", file=sys.stderr)
        return 2
    module = importlib.import_module(commands[name][0])
    result: int = module.main(rest)
    return result
