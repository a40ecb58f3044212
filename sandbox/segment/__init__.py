"""The Segment emulator: Public API, Tracking API and Webhooks (Actions) delivery on one port.

`SegmentEmulator` runs in process; `python -m sandbox segment --port P` runs it as a command.
"""

from sandbox.segment.server import ADMIN_TOKEN, NOADMIN_TOKEN, WORKSPACE_ID, SegmentEmulator, main

__all__ = ["ADMIN_TOKEN", "NOADMIN_TOKEN", "WORKSPACE_ID", "SegmentEmulator", "main"]
