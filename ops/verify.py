"""`python -m ops verify --stack NAME` (`make verify STACK=NAME`): prove a deployed stack
works end to end, with a dedicated smoke-test user, and clean up after itself.

Checks, in order (each prints PASS or FAIL, a FAIL says what to look at):
1. the stack's outputs and config are readable, the bridge URL is known;
2. the bridge answers `GET /health` with both directions configured;
3. a signed synthetic Segment identify + track for `userflow-bridge-smoke-<random>` is accepted
   by the bridge's `/segment` route;
4. the user arrives in Userflow (`GET /users/{id}` on Userflow's REST API);
5. the event arrives in Userflow: Userflow's REST API has no endpoint that lists events, so
   locally the Userflow emulator's state is read; on AWS the bridge's queues are read instead
   (the work queue drains and the dead-letter queue holds nothing);
6. a signed synthetic Userflow webhook is accepted by `/userflow`;
7. the bridge forwarded it to Segment's Tracking API: locally its `/__sandbox__/stats`, on
   AWS the queues as in 5;
8. Segment counted it on the Userflow source: its Public API's `GET /events/volume` shows the
   Title Case track since verify began (polled for a bounded time: Segment advises reading its
   volume about a minute behind the clock). The Tracking API answers 200 to a write key no
   source has and discards the events, so without this a wrong or rotated write key would go
   unseen: it FAILs naming the write key to look at;
9. Segment's deliveries to the bridge succeed: the Public API's delivery metrics of the
   destination show no discarded or expired deliveries in the last `DELIVERY_LOOKBACK`;
10. the smoke-test user is deleted (`DELETE /users/{id}`, then `GET` answers 404).

Checks 8 and 9 read Segment's Public API with the stack's Segment token (config
`segmentToken`), locally the Segment emulator's. Secrets for signing come from the stack:
locally from its state (decrypted in memory by the engine), on AWS from Secrets Manager by the
ARNs in the outputs (`ops/target.py` finds them: check 1). None is ever printed.
Exit 0 only if every check passed.
"""

from __future__ import annotations

import argparse
import json
import secrets as random_tokens
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from bridge_code.mapping import title_case
from bridge_code.signatures import sign_segment, sign_userflow
from components.segment_api import API_URL_KEY as SEGMENT_API_URL_KEY
from components.segment_api import TOKEN_KEY as SEGMENT_TOKEN_KEY
from components.userflow_api import API_VERSION
from ops.engine import (
    CONFIG_NAMESPACE,
    DEFAULT_STATE_DIR,
    Engine,
    EngineError,
    SecretsTrouble,
    SecretsUnavailable,
)
from ops.segment_reports import SegmentReportError, SegmentReports
from ops.target import CheckFailed, StackReader, Target, aws_target, local_target

HTTP_TIMEOUT_S = 10.0
DEFAULT_WAIT_S = 30.0
SMOKE_EVENT = "Userflow Bridge Smoke Test"
SMOKE_EVENT_USERFLOW = "userflow_bridge_smoke_test"
SMOKE_WEBHOOK_EVENT = "flow_completed"
# Segment's reports lag behind its Tracking API (its spec: query the volume about a minute
# behind the clock): how long verify waits for a deployed stack's count, at least.
SEGMENT_REPORTING_WAIT_S = 150.0
REPORT_POLL_S = 2.0  # the report endpoints allow 60 requests per minute
DELIVERY_LOOKBACK = timedelta(minutes=15)

# What verify says when the engine cannot decrypt the stack's secrets (detail, where to look):
# the stack exists, so "is it deployed?" would send the user the wrong way.
SECRETS_ADVICE: dict[SecretsTrouble, tuple[str, str]] = {
    "no passphrase": (
        "the stack's secrets need its passphrase, and neither PULUMI_CONFIG_PASSPHRASE nor "
        "PULUMI_CONFIG_PASSPHRASE_FILE is set",
        "set PULUMI_CONFIG_PASSPHRASE to the passphrase the stack was created with (or "
        "PULUMI_CONFIG_PASSPHRASE_FILE to a file holding it), then run verify again"),
    "wrong passphrase": (
        "PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) is not this stack's "
        "passphrase",
        "use the passphrase the stack was created with (each stack has its own)"),
    "secrets provider": (
        "the stack's secrets provider cannot decrypt its secrets",
        "the provider in `secretsprovider:` of the stack file (e.g. awskms://...): are "
        "credentials for it set (AWS_PROFILE, region) and allowed to decrypt?"),
}



@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str
    hint: str = ""



class Verifier:
    """Runs the checks against one target; every check is recorded, none short-circuits
    the cleanup of the smoke-test user."""

    def __init__(self, target: Target, wait_s: float, out: Callable[[str], None],
                 report_wait_s: float | None = None) -> None:
        self.target = target
        self.wait_s = wait_s
        # How long Segment's count may take to show the forwarded event (its reports lag).
        self.report_wait_s = report_wait_s if report_wait_s is not None else (
            wait_s if target.hosting == "local" else max(wait_s, SEGMENT_REPORTING_WAIT_S))
        self.out = out
        self.results: list[CheckResult] = []
        suffix = random_tokens.token_hex(4)
        self.user_id = f"userflow-bridge-smoke-{suffix}"
        self.smoke_id = f"smoke-{suffix}"
        self.notification_id = f"smoke-{uuid.uuid4().hex}"
        self.http = requests.Session()
        self.before: dict[str, Any] = {}
        self.dead_letters_before = 0
        self.started = datetime.now(UTC)

    # -- plumbing ------------------------------------------------------------------------
    def check(self, name: str, step: Callable[[], str]) -> bool:
        try:
            detail = step()
        except CheckFailed as failure:
            result = CheckResult(name, False, failure.detail, failure.hint)
        except requests.RequestException as exc:
            result = CheckResult(name, False, f"{type(exc).__name__}: {exc}",
                                 "is the process at that URL running and reachable?")
        else:
            result = CheckResult(name, True, detail)
        self.results.append(result)
        mark = "PASS" if result.passed else "FAIL"
        self.out(f"{mark}  {name}: {result.detail}")
        if not result.passed:
            self.out(f"      look at: {result.hint}")
        return result.passed

    def _userflow(self, method: str, path: str, body: Any = None) -> requests.Response:
        return self.http.request(
            method, self.target.userflow_api_url + path, json=body, timeout=HTTP_TIMEOUT_S,
            headers={"Authorization": f"Bearer {self.target.userflow_api_key}",
                     "Userflow-Version": API_VERSION},
        )

    def _poll(self, probe: Callable[[], bool], wait_s: float | None = None,
              interval_s: float = 0.25) -> bool:
        deadline = time.monotonic() + (self.wait_s if wait_s is None else wait_s)
        while True:
            if probe():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval_s)

    def _segment_reports(self) -> SegmentReports:
        target = self.target
        if not target.segment_url or not target.segment_token:
            raise CheckFailed(
                "the stack has no Segment Public API URL or token to read Segment's reports",
                f"`pulumi config get {SEGMENT_TOKEN_KEY} --stack {target.stack}` (and "
                f"{SEGMENT_API_URL_KEY}); locally, pass --segment-url")
        return SegmentReports(target.segment_url, target.segment_token, self.http)

    def _bridge_stats(self) -> dict[str, Any]:
        reply = self.http.get(self.target.bridge_url + "/__sandbox__/stats",
                              timeout=HTTP_TIMEOUT_S)
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    # -- checks --------------------------------------------------------------------------
    def health(self) -> str:
        reply = self.http.get(self.target.bridge_url + "/health", timeout=HTTP_TIMEOUT_S)
        if reply.status_code != 200:
            raise CheckFailed(f"GET /health answered {reply.status_code}",
                              "the bridge's logs (locally: the bridge process's stderr)")
        directions = reply.json().get("directions") or {}
        off = [d for d, on in directions.items() if not on]
        if off:
            raise CheckFailed(f"not configured: {', '.join(off)}",
                              "the bridge's secret variables/ARNs (see /health)")
        return f"{self.target.bridge_url}/health ok, both directions configured"

    def send_segment(self) -> str:
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        base = {"userId": self.user_id, "timestamp": now, "sentAt": now,
                "context": {"library": {"name": "userflow-bridge-verify", "version": "1"}}}
        events = [
            {**base, "type": "identify", "messageId": f"{self.smoke_id}-identify",
             "traits": {"name": "Bridge smoke test", "smoke_test": True}},
            {**base, "type": "track", "messageId": f"{self.smoke_id}-track",
             "event": SMOKE_EVENT, "properties": {"smoke_id": self.smoke_id}},
        ]
        for event in events:
            body = json.dumps(event, separators=(",", ":")).encode()
            reply = self.http.post(
                self.target.bridge_url + "/segment", data=body, timeout=HTTP_TIMEOUT_S,
                headers={"Content-Type": "application/json",
                         "X-Signature": sign_segment(body, self.target.shared_secret)})
            if not 200 <= reply.status_code < 300:
                raise CheckFailed(
                    f"POST /segment ({event['type']}) answered {reply.status_code}: "
                    f"{reply.text[:200]}",
                    "a 401 means the bridge's Segment shared secret differs from the "
                    "destination's (rotated? redeploy); 503: that direction is not configured")
        return f"signed identify + track for {self.user_id} accepted by /segment"

    def user_arrived(self) -> str:
        seen: dict[str, Any] = {}

        def probe() -> bool:
            reply = self._userflow("GET", f"/users/{self.user_id}")
            if reply.status_code == 200:
                seen.update(reply.json())
                return bool((seen.get("attributes") or {}).get("smoke_test"))
            return False

        if not self._poll(probe):
            raise CheckFailed(
                f"GET /users/{self.user_id} on Userflow did not show the user within "
                f"{self.wait_s:.0f} s",
                "the bridge's delivery logs and dead-letter queue (a 401 from Userflow means "
                "the bridge's Userflow API key is wrong or for another environment)")
        return f"user {self.user_id} is in Userflow with its attributes"

    def event_arrived(self) -> str:
        if self.target.hosting == "local":
            def probe() -> bool:
                state = self._userflow_emulator_state()
                return any(
                    e.get("name") == SMOKE_EVENT_USERFLOW
                    and (e.get("attributes") or {}).get("smoke_id") == self.smoke_id
                    for e in _as_list(state.get("events")))

            if not self._poll(probe):
                raise CheckFailed(
                    f"no {SMOKE_EVENT_USERFLOW} event with smoke_id {self.smoke_id} in the "
                    "Userflow emulator",
                    "the bridge's /__sandbox__/stats (dead_lettered, skipped) and its stderr")
            return f"event {SMOKE_EVENT_USERFLOW} is in Userflow (emulator state)"
        return self._queues_drained("Segment → Userflow event")

    def send_userflow(self) -> str:
        self.before = self._bridge_stats() if self.target.hosting == "local" else {}
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        notification = {
            "id": self.notification_id, "object": "webhook_notification",
            "api_version": API_VERSION, "created_at": now, "topic": "event.tracked",
            "data": {"object": {
                "id": f"{self.smoke_id}-event", "object": "event", "name": SMOKE_WEBHOOK_EVENT,
                "attributes": {"smoke_id": self.smoke_id}, "user_id": self.user_id,
                "group_id": None, "time": now, "created_at": now}},
        }
        body = json.dumps(notification, separators=(",", ":")).encode()
        header = sign_userflow(body, self.target.userflow_webhook_secret, int(time.time()))
        reply = self.http.post(self.target.userflow_url, data=body,
                               timeout=HTTP_TIMEOUT_S,
                               headers={"Content-Type": "application/json",
                                        "Userflow-Signature": header})
        if not 200 <= reply.status_code < 300:
            raise CheckFailed(
                f"POST /userflow answered {reply.status_code}: {reply.text[:200]}",
                "a 401 means the bridge's Userflow webhook secret differs from the "
                "subscription's (redeploy); 503: that direction is not configured")
        return f"signed webhook {self.notification_id[:18]}… accepted by /userflow"

    def forwarded(self) -> str:
        if self.target.hosting != "local":
            return self._queues_drained("Userflow → Segment webhook")
        message_id = f"userflow-{self.notification_id}"
        before = int((self.before.get("userflow_to_segment") or {}).get("delivered", 0))

        def probe() -> bool:
            stats = self._bridge_stats()
            delivered = int((stats.get("userflow_to_segment") or {}).get("delivered", 0))
            return delivered > before

        if not self._poll(probe):
            raise CheckFailed(
                "the bridge did not deliver the webhook to Segment's Tracking API in time",
                "the bridge's /__sandbox__/stats (userflow_to_segment: dead_lettered, "
                "retried) and its stderr")
        return (f"{message_id[:27]}… delivered to Segment's Tracking API, says the bridge "
                "(whether Segment kept it: next check)")

    def segment_counted(self) -> str:
        """Segment's own count of the forwarded track on the Userflow source: the Tracking API
        answers 200 even to an unknown write key, so only this shows a silent drop."""
        reports = self._segment_reports()
        source_id = self.target.userflow_source_id
        if not source_id:
            raise CheckFailed("the stack exports no userflowSourceId",
                              f"`pulumi stack output --stack {self.target.stack}`")
        name = title_case(SMOKE_WEBHOOK_EVENT)
        since = self.started.replace(second=0, microsecond=0)
        counted = [0]

        def probe() -> bool:
            # endTime is exclusive: a minute ahead takes in what arrived this minute.
            until = datetime.now(UTC) + timedelta(minutes=1)
            counted[0] = reports.event_volume(source_id, since, until, name)
            return counted[0] > 0

        wait_s = self.report_wait_s
        try:
            if self._poll(probe, wait_s, REPORT_POLL_S):
                return (f"Segment's event volume shows {counted[0]} {name!r} track(s) on the "
                        f"Userflow source {source_id} since {since:%H:%M}Z")
        except SegmentReportError as exc:
            raise CheckFailed(str(exc), _REPORT_HINT.format(stack=self.target.stack)) from exc
        raise CheckFailed(
            f"Segment counts 0 {name!r} tracks on the Userflow source {source_id} since "
            f"{since:%H:%M}Z (waited {wait_s:.0f} s), although the bridge delivered one: "
            "Segment's Tracking API answers 200 to a write key no source has and discards "
            "the events (a wrong or rotated write key)",
            self.target.write_key_origin)

    def segment_deliveries(self) -> str:
        """Segment's delivery metrics of the destination: did it give up on any delivery to
        the bridge lately (discarded: e.g. a 401 for a wrong shared secret; expired)?"""
        reports = self._segment_reports()
        destination_id, source_id = self.target.destination_id, self.target.app_source_id
        if not destination_id or not source_id:
            raise CheckFailed("the stack exports no destinationId/appSourceId",
                              f"`pulumi stack output --stack {self.target.stack}`")
        minutes = int(DELIVERY_LOOKBACK.total_seconds() // 60)
        try:
            summary = reports.deliveries(destination_id, source_id,
                                         self.started - DELIVERY_LOOKBACK,
                                         datetime.now(UTC) + timedelta(minutes=1))
        except SegmentReportError as exc:
            raise CheckFailed(str(exc), _REPORT_HINT.format(stack=self.target.stack)) from exc
        if summary.failures:
            raise CheckFailed(
                f"Segment gave up on {summary.failures} of "
                f"{summary.failures + summary.successes} deliveries to the bridge in the last "
                f"{minutes} min ({summary.failure_rate:.0%}; {summary.retried} retried)",
                "the bridge's logs at those times: 401 = the destination's shared secret "
                "differs from the bridge's (redeploy), 5xx/timeouts = the bridge was down or "
                "slow; Segment's Event Delivery view of the destination")
        return (f"{summary.successes} delivered, 0 discarded or expired in the last {minutes} "
                f"min ({summary.retried} retried; Segment's delivery metrics of "
                f"{destination_id})")

    def delete_user(self) -> str:
        reply = self._userflow("DELETE", f"/users/{self.user_id}")
        if reply.status_code not in (200, 202, 204, 404):
            raise CheckFailed(f"DELETE /users/{self.user_id} answered {reply.status_code}",
                              "delete the user by hand in Userflow; check the API key's rights")
        gone = self._userflow("GET", f"/users/{self.user_id}")
        if gone.status_code != 404:
            raise CheckFailed(f"GET /users/{self.user_id} still answers {gone.status_code}",
                              "a late delivery may have re-created it: run verify again")
        return f"smoke-test user {self.user_id} deleted"

    # -- helpers -------------------------------------------------------------------------
    def _userflow_emulator_state(self) -> dict[str, Any]:
        reply = self.http.get(self.target.userflow_api_url + "/__sandbox__/state",
                              timeout=HTTP_TIMEOUT_S)
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    def _queue_depth(self, url: str) -> int:
        import boto3  # type: ignore[import-untyped]

        sqs = boto3.client("sqs", region_name=self.target.region)
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        values = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(values.get(name, 0)) for name in names)

    def _dead_letters(self) -> int:
        url = self.target.queue_urls.get("deadLetterQueueUrl")
        return self._queue_depth(url) if url else 0

    def _queues_drained(self, what: str) -> str:
        """AWS hosting: delivered = the work queue drained and the dead-letter queue did not
        grow (Userflow's and Segment's APIs don't list received events)."""
        work = self.target.queue_urls.get("queueUrl")
        if not work or "deadLetterQueueUrl" not in self.target.queue_urls:
            raise CheckFailed(f"{what}: the stack exports no queueUrl/deadLetterQueueUrl",
                              f"`pulumi stack output --stack {self.target.stack}`")
        if not self._poll(lambda: self._queue_depth(work) == 0):
            raise CheckFailed(f"{what}: the work queue did not drain in {self.wait_s:.0f} s",
                              "the delivery function's logs and its errors metric/alarm")
        grown = self._dead_letters() - self.dead_letters_before
        if grown > 0:
            raise CheckFailed(f"{what}: {grown} new message(s) in the dead-letter queue",
                              "the messages' reason attribute; fix, then replay them")
        return f"{what}: work queue drained, no new dead letter (checked via SQS)"

    def run(self) -> bool:
        if self.target.hosting != "local" and self.target.queue_urls:
            try:
                self.dead_letters_before = self._dead_letters()
            except Exception as exc:  # reported by the queue checks themselves
                self.out(f"note: could not read the dead-letter queue: {type(exc).__name__}")
        self.check("bridge health", self.health)
        if self.check("Segment → bridge (/segment) accepted", self.send_segment):
            self.check("user arrived in Userflow (REST API)", self.user_arrived)
            self.check("event arrived in Userflow", self.event_arrived)
        if (self.check("Userflow webhook → bridge (/userflow) accepted", self.send_userflow)
                and self.check("webhook forwarded to Segment", self.forwarded)):
            self.check("Segment counted it on the Userflow source (Public API)",
                       self.segment_counted)
        self.check("Segment's deliveries to the bridge succeed (Public API)",
                   self.segment_deliveries)
        self.check("smoke-test user deleted", self.delete_user)
        return all(r.passed for r in self.results)


_REPORT_HINT = (
    "a 401/403: the stack's Segment token (`pulumi config get " + SEGMENT_TOKEN_KEY
    + " --stack {stack}`), is it valid for this workspace and allowed to read event volume and"
    " delivery metrics? A 429: Segment's report endpoints allow 60 requests a minute, run"
    " verify again in a minute")


def _as_list(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        value = list(value.values())
    return [v for v in value or [] if isinstance(v, Mapping)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops verify", description=(
        "End-to-end checks of a deployed stack with a smoke-test user; exit 0 if all pass."))
    parser.add_argument("--stack", required=True, help="the stack (environment) to verify")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="file backend of the sandbox (default .pulumi-state/ for the "
                             "local stack; other stacks use your own Pulumi login)")
    parser.add_argument("--bridge-url", default=None, help="override the bridge's URL")
    parser.add_argument("--userflow-api-url", default=None, help="override Userflow's URL")
    parser.add_argument("--segment-url", default=None,
                        help="override Segment's Public API URL (locally: the emulator's)")
    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT_S,
                        help="seconds to wait for each arrival")
    parser.add_argument("--report-wait", type=float, default=None,
                        help="seconds to wait for Segment's count of the forwarded event "
                             f"(default: --wait locally, at least {SEGMENT_REPORTING_WAIT_S:.0f} "
                             "on a deployed stack: Segment's reports lag about a minute)")
    return parser


def verify(
    stack: str,
    *,
    state_dir: Path | None = None,
    bridge_url: str | None = None,
    userflow_api_url: str | None = None,
    segment_url: str | None = None,
    wait_s: float = DEFAULT_WAIT_S,
    out: Callable[[str], None] = print,
    engine: StackReader | None = None,
    report_wait_s: float | None = None,
) -> bool:
    overrides = {"bridgeUrl": bridge_url, "userflowApiUrl": userflow_api_url,
                 "segmentApiUrl": segment_url}
    local = stack == "local" or state_dir is not None
    sandbox_dir = state_dir or DEFAULT_STATE_DIR
    out(f"verifying stack {stack!r}")
    try:
        if engine is None:
            engine = Engine(state_dir=sandbox_dir, isolated=local)
        config = engine.config(stack)
        hosting = str(config.get(f"{CONFIG_NAMESPACE}:hosting") or "aws")
        target = (local_target(engine, stack, overrides, sandbox_dir) if hosting == "local"
                  else aws_target(engine, stack, overrides))
    except CheckFailed as failure:
        out(f"FAIL  stack outputs and config: {failure.detail}")
        out(f"      look at: {failure.hint}")
        return False
    except SecretsUnavailable as locked:
        detail, hint = SECRETS_ADVICE[locked.trouble]
        out(f"FAIL  stack outputs and config: {detail}")
        out(f"      look at: {hint}")
        return False
    except EngineError as exc:
        out(f"FAIL  stack outputs and config: {exc}")
        out(f"      look at: `pulumi stack ls`; is the stack {stack!r} deployed?")
        return False
    out(f"PASS  stack outputs and config: hosting={target.hosting}, bridge {target.bridge_url}")
    return Verifier(target, wait_s, out, report_wait_s).run()


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    ok = verify(args.stack, state_dir=args.state_dir, bridge_url=args.bridge_url,
                userflow_api_url=args.userflow_api_url, segment_url=args.segment_url,
                wait_s=args.wait, report_wait_s=args.report_wait)
    print("verify: all checks passed" if ok else "verify: FAILED", file=sys.stdout)
    return 0 if ok else 1
