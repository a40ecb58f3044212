"""`python -m sandbox <command>`: one entry point for every sandbox process.

Each command lives in its own module and is imported only when chosen (ops/commands.py).
"""

from __future__ import annotations

import sys

from ops.commands import Commands, dispatch

COMMANDS: Commands = {
    "segment": ("sandbox.segment", "Segment emulator: Public API, Tracking API, delivery"),
    "userflow": ("sandbox.userflow", "Userflow emulator: REST API and signed webhooks"),
    "aws": ("sandbox.local_aws", "SQS/Secrets Manager/DynamoDB (moto) outliving the bridge"),
    "bridge": ("sandbox.local_bridge", "the bridge served locally, SQS/Secrets Manager from moto"),
    "demo": ("sandbox.demo", "the whole integration offline: emulators, bridge, pulumi up/destroy"),
    "verify": ("ops.verify", "alias of `python -m ops verify`: end-to-end checks of a stack"),
}


def main(argv: list[str]) -> int:
    return dispatch("python -m sandbox", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
