"""`python -m ops <command>`: what runs against real (deployed) stacks.

The sandbox's own processes stay under `python -m sandbox`; a command here must work for
`staging` and `production` as well as for the local sandbox stack.
"""

from __future__ import annotations

import sys

from ops.commands import Commands, dispatch

COMMANDS: Commands = {
    "verify": ("ops.verify", "end-to-end checks of a deployed stack with a smoke-test user"),
}


def main(argv: list[str]) -> int:
    return dispatch("python -m ops", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
