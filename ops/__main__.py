"""`python -m ops <command>`: what runs against real (deployed) stacks.

The sandbox's own processes stay under `python -m sandbox`; a command here must work for
`staging` and `production` as well as for the local sandbox stack.
"""

from __future__ import annotations

import importlib
import sys

from components.version import VERSION

COMMANDS: dict[str, tuple[str, str]] = {
    "verify": ("ops.verify", "end-to-end checks of a deployed stack with a smoke-test user"),
}


def usage() -> str:
    lines = ["usage: python -m ops <command> [options] | --version", "", "commands:"]
    lines += [f"  {name:<9} {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"userflow-segment {VERSION}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
