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
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from sandbox.cli import add_listen_arguments, stop_on_signals, wait_until


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox aws", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_listen_arguments(parser)
    args = parser.parse_args(argv)
    stopping = stop_on_signals()
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
    wait_until(stopping)
    server.shutdown()
    thread.join(timeout=10)
    return 0
