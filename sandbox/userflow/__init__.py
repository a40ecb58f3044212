"""The Userflow emulator: REST API and signed webhooks, with in-app activity simulated on demand.

`UserflowEmulator` runs in process; `python -m sandbox userflow --port P` runs it as a command.
"""

from sandbox.userflow.server import API_VERSION, SANDBOX_API_KEY, UserflowEmulator, main

__all__ = ["API_VERSION", "SANDBOX_API_KEY", "UserflowEmulator", "main"]
