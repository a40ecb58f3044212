"""The sandbox's AWS: SQS, Secrets Manager and DynamoDB served by moto in a process of its own.

    python -m sandbox aws --port PORT        # prints: READY aws http://127.0.0.1:PORT

A local bridge pointed at it (BRIDGE_AWS_ENDPOINT_URL) keeps its queues, dead letters,
secrets and ledger here, so they outlive the bridge the way SQS and DynamoDB outlive a
Lambda container: a bridge killed with a backlog and started again with the same settings
finds the same queues and ledger and delivers what the killed one acknowledged. Whoever
starts this process owns its lifetime (the demo's ServiceGroup starts it before the bridge
and stops it after); its state is in memory, so it ends with this process, as a queue ends
when it is deleted.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox aws", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    logging.getLogger("werkzeug").setLevel("ERROR")  # one line per AWS call otherwise
    try:
        # What moto's ThreadedMotoServer runs, built here so that a port in use is an error
        # now (ThreadedMotoServer would wait forever for a server that failed to bind).
        server = make_server(args.host, args.port, DomainDispatcherApplication(
            create_backend_app), threaded=True, request_handler=MotoRequestHandler)
    except OSError as error:
        print(f"local AWS failed to start: {error}", file=sys.stderr)
        return 1
    thread = threading.Thread(target=server.serve_forever, name="local-aws", daemon=True)
    thread.start()
    print(f"READY aws http://{args.host}:{server.server_address[1]}", flush=True)
    while not stopping.wait(0.5):
        pass
    server.shutdown()
    thread.join(timeout=10)
    return 0
