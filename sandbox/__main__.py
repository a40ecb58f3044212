"""`python -m sandbox <command>`: one entry point for every sandbox process.

Each command lives in its own module and is imported only when chosen, so starting one
emulator never pays for loading the others (the Segment spec alone takes about a second).
"""

from __future__ import annotations

import importlib
import sys

from components.project import PROJECT
from components.version import VERSION

COMMANDS: dict[str, tuple[str, str]] = {
    "segment": ("sandbox.segment", "Segment emulator: Public API, Tracking API, delivery"),
    "userflow": ("sandbox.userflow", "Userflow emulator: REST API and signed webhooks"),
    "aws": ("sandbox.local_aws", "SQS/Secrets Manager/DynamoDB (moto) outliving the bridge"),
    "bridge": ("sandbox.local_bridge", "the bridge served locally, SQS/Secrets Manager from moto"),
    "demo": ("sandbox.demo", "the whole integration offline: emulators, bridge, pulumi up/destroy"),
    "verify": ("ops.verify", "alias of `python -m ops verify`: end-to-end checks of a stack"),
}


def usage() -> str:
    lines = ["usage: python -m sandbox <command> [options] | --version", "", "commands:"]
    lines += [f"  {name:<9} {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"{PROJECT} {VERSION}")
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
