"""The Segment emulator: Public API, Tracking API and Webhooks (Actions) delivery on one port.

`python -m sandbox segment --port P` prints `READY segment http://127.0.0.1:P` once listening.

This module holds the state, the shared emulator hooks and the command line; the rest is laid
out as moto lays out a service: `models` (credentials, error bodies, rendering, rules),
`handlers` and `routes` (Public API handlers and their route table), `public_api` (the request
pipeline and its spec validation), `tracking`, `delivery`, `spec`, `catalog` and `fql`.

- Public API (`/sources`, `/destinations`, subscriptions, write keys, catalog, and the reports
  `/events/volume` and `/destinations/{id}/delivery-metrics`, see `observability`): every request is
  validated against the official OpenAPI spec (400 naming the violation) and so is every
  response (a violation is an emulator bug: 500, and `spec_violations` in the state).
- Tracking API (`/v1/identify|track|page|screen|group|alias|batch`): Basic auth or `writeKey` in
  the body; 400 only for invalid JSON or oversize payloads; everything else answers 200 and
  events that cannot be accepted (unknown write key, no userId/anonymousId, track without
  event, disabled source, a messageId of 100+ characters) are dropped, as the real collector
  does, and listed in `dropped`. A repeated messageId within a source is dropped as a duplicate.
- Delivery: each accepted event goes, on background threads, to every enabled Send
  subscription (FQL trigger matching) of every enabled Webhooks (Actions) destination of its
  source, signed with `X-Signature`, batched if asked, retried on 5xx/408/423/429/timeouts.

Inspection (`/__sandbox__/`, docs/ARCHITECTURE.md): `state` holds `sources` (with their write
keys), `destinations` (settings in clear: deliveries are signed with them), `subscriptions`,
`events` (source id → events as delivered, each with `receivedAt`), `dropped` (reason per
event), `deduplicated`, `spec_violations`, `deliveries` (one entry per attempt: status,
attempt, latency_ms, error, destination/subscription ids, message ids, the `body` and
`signature` sent), `deliveries_pending`
and `faults`; `requests?kind=public|tracking` is the request log. In process,
`emulator.state()`, `emulator.request_log(kind)` and `emulator.deliveries.wait_idle(timeout)`
give the same without HTTP.

Options (keyword arguments, or the command's flags): `seed` (ids and keys; default 0),
`tokens` (extra Public API tokens → has source admin), `batch_window_s` (0.5),
`rate_limit_per_s` (1000 per token), `report_rate_limit_per_min` (60 per token and report
endpoint, the spec's figure for event volume and delivery metrics), `delivery_attempts` (5),
`delivery_backoff_s` (0.2, doubled per retry), `delivery_timeout_s` (10), `spec_path`.

Choices where the real API is silent (documented for the clients built against this):
- `X-RateLimit-Reset` is the epoch milliseconds at which the current window ends; a 429 carries
  `data.msBeforeNext` and `Retry-After` (seconds).
- One emulator is one workspace (`ws_sandbox`): every accepted token sees the same objects.
- Subscription `settings` PATCH merges like destination settings (`null` removes a key).
- Deleting a source deletes its destinations and their subscriptions.
- A destination is created disabled unless `enabled` is given.
- The Send action's `data` mapping supports only the default `{"@path": "$."}` (the whole
  event); any other mapping is refused with 422.
- Write key endpoints (alpha, not in the v36 spec) are validated by hand; they need the
  source-admin token (403 otherwise). `POST /sources/{id}/writekey` answers
  `{"data": {"writeKey", "source"}}`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from typing import Unpack

from sandbox.emulator import (
    DeliveryOptions,
    Emulator,
    Fault,
    IdFactory,
    add_delivery_arguments,
    add_server_arguments,
    delivery_options,
)
from sandbox.segment.delivery import Batcher, send
from sandbox.segment.models import (
    ADMIN_TOKEN,
    NOADMIN_TOKEN,
    WORKSPACE_ID,
    error_envelope,
    rate_limited,
)
from sandbox.segment.public_api import handle_public
from sandbox.segment.spec import SPEC_PATH_ENV, SegmentSpec, load_spec
from sandbox.segment.tracking import handle_tracking, tracking_error
from sandbox.wire import HttpRequest, HttpResponse, JsonObject

__all__ = ["ADMIN_TOKEN", "NOADMIN_TOKEN", "WORKSPACE_ID", "SegmentEmulator", "main"]


class SegmentEmulator(Emulator):
    name = "segment"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int | None = 0,
        tokens: Mapping[str, bool] | None = None,
        batch_window_s: float = 0.5,
        rate_limit_per_s: int = 1000,
        report_rate_limit_per_min: int = 60,
        spec_path: str | None = None,
        **delivery: Unpack[DeliveryOptions],
    ) -> None:
        super().__init__(host, port, seed=seed, **delivery)
        # Loaded (once per process) before the server listens: READY means validation is ready.
        self.spec: SegmentSpec = load_spec(spec_path)
        self.tokens: dict[str, bool] = {ADMIN_TOKEN: True, NOADMIN_TOKEN: False}
        self.tokens.update(tokens or {})
        self.rate_limit_per_s = rate_limit_per_s
        self.report_rate_limit_per_min = report_rate_limit_per_min
        # token (or "token template" for report endpoints) → (window start, calls)
        self.rate_windows: dict[str, tuple[float, int]] = {}
        self.batcher = Batcher(
            batch_window_s, lambda key, items: send(self, key, items, batched=True)
        )
        # Own streams for messageIds and delivery ids: background batching must not shift the
        # ids a seeded run gives to sources, destinations and subscriptions.
        self.event_ids = IdFactory(None if seed is None else seed + 1)
        self.delivery_ids = IdFactory(None if seed is None else seed + 2)
        self.reset_state()

    # -- state ---------------------------------------------------------------------------------

    def reset_state(self) -> None:
        with self.lock:
            self.sources: dict[str, JsonObject] = {}
            self.destinations: dict[str, JsonObject] = {}
            self.subscriptions: dict[str, JsonObject] = {}
            self.events: dict[str, list[JsonObject]] = {}
            self.message_ids: dict[str, set[str]] = {}
            self.dropped: list[JsonObject] = []
            self.deduplicated = 0
            self.spec_violations: list[JsonObject] = []
            self.rate_windows.clear()
            self.event_ids.reset()
            self.delivery_ids.reset()
        self.batcher.clear()

    def stored_state(self) -> JsonObject:
        with self.lock:
            snapshot: JsonObject = json.loads(
                json.dumps(
                    {
                        "workspaceId": WORKSPACE_ID,
                        "sources": list(self.sources.values()),
                        "destinations": list(self.destinations.values()),
                        "subscriptions": list(self.subscriptions.values()),
                        "events": self.events,
                        "dropped": self.dropped,
                        "deduplicated": self.deduplicated,
                        "spec_violations": self.spec_violations,
                    }
                )
            )
        return snapshot

    def stop(self) -> None:
        self.batcher.clear()
        super().stop()

    # -- shared emulator hooks -----------------------------------------------------------------

    def request_kind(self, request: HttpRequest) -> str:
        return "tracking" if request.path.startswith("/v1/") else "public"

    def fault_response(self, fault: Fault, request: HttpRequest) -> HttpResponse:
        status = fault.status or 500
        if request.path.startswith("/v1/"):
            response = tracking_error(status, "injected fault")
        elif status == 404:
            response = error_envelope(404, "NotFound", "Resource not found")
        elif status == 422:
            response = error_envelope(422, "ValidationFailure", "Validation failure")
        elif status == 429:
            wait_s = fault.retry_after if fault.retry_after is not None else 0.1
            response = rate_limited(int(wait_s * 1000))
        else:
            response = error_envelope(status, "InternalServerError", "injected fault")
        if fault.retry_after is not None:
            response.headers["Retry-After"] = str(max(1, math.ceil(fault.retry_after)))
        return response

    def handle_api(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/v1/"):
            return handle_tracking(self, request)
        return handle_public(self, request)


# -- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox segment", description=__doc__.split("\n")[0]
    )
    add_server_arguments(parser, seeded="ids and keys")
    parser.add_argument("--token", action="append", default=[], help="extra source-admin token")
    parser.add_argument(
        "--token-noadmin", action="append", default=[], help="extra token without source admin"
    )
    parser.add_argument("--batch-window", type=float, default=0.5, help="seconds a batch collects")
    parser.add_argument("--rate-limit", type=int, default=1000, help="Public API calls/s per token")
    add_delivery_arguments(parser)
    parser.add_argument(
        "--spec",
        default=None,
        help="a Segment Public API OpenAPI document to validate against (default: "
        f"${SPEC_PATH_ENV}, else the subset shipped in sandbox/segment/)",
    )
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    tokens = {token: True for token in args.token}
    tokens.update({token: False for token in args.token_noadmin})
    try:
        emulator = SegmentEmulator(
            args.host,
            args.port,
            seed=args.seed,
            tokens=tokens,
            batch_window_s=args.batch_window,
            rate_limit_per_s=args.rate_limit,
            spec_path=args.spec,
            **delivery_options(args),
        )
    except RuntimeError as exc:  # an unreadable spec: one line saying which and what to do
        print(f"segment emulator: {exc}", file=sys.stderr)
        return 2
    return emulator.serve_until_interrupted()
