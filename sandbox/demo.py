"""`python -m sandbox demo`: the whole integration offline, in one command.

① start the Segment and Userflow emulators (owned: stopped on exit, failure, Ctrl-C, SIGTERM);
② `pulumi up --stack local` under the real engine, on a temporary copy of Pulumi.local.yaml
   pointing at the emulators and at the port the bridge is about to take: it creates the app
   source, the Userflow HTTP API source, the Webhooks (Actions) destination and its
   subscription, and the Userflow webhook subscription;
③ start the local bridge with the providers' secret outputs read from the stack's state (in
   memory only, handed over in the bridge's environment);
④ the official Segment library identifies, tracks and groups N users through the app source,
   plus, by design, anonymous-only tracks the bridge must skip (no_user_id) and one track
   named like a Userflow built-in that comes back by webhook and must be dropped (echo);
   once they arrived, one delivery Segment made is resent byte for byte with its
   X-Signature, as someone who captured it would: the bridge must answer 200, enqueue nothing
   and count it (replay);
⑤ simulated Userflow activity (flows, checklist tasks) fires webhooks;
⑥ wait (bounded) until everything arrived or was skipped, print one table row per direction
   (skips with their reasons, from the bridge's /__sandbox__/stats), with Segment's own count
   beside the bridge's, read through Segment's Public API: its delivery metrics (events
   delivered to the bridge) and its event volume on the Userflow source;
⑦ `pulumi destroy`, check the emulators hold no sources, destinations or subscriptions.

Exit 0 only if every event arrived exactly once, the bridge skipped exactly the events sent
to be skipped (for the designed reasons) and none of them arrived anywhere, nothing echoed,
the replay was answered 2xx and counted, exactly: the one sent on purpose plus Segment's own
retries after a lost answer (which are replays too, sandbox/traffic.py),
Segment's own counts agree with the bridge's (a disagreement is a silent drop, e.g. a wrong
write key, which Segment's Tracking API answers with 200), and destroy left nothing.
`--keep` stops before ⑦, prints the URLs and waits for Ctrl-C (then destroys and stops).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from bridge_code.ingest import SKIP_REPLAY
from bridge_code.mapping import SKIP_NO_USER_ID
from components.segment_api import TOKEN_KEY as SEGMENT_TOKEN_KEY
from components.userflow_api import API_KEY_KEY
from ops.engine import DEFAULT_STATE_DIR, Engine, EngineError, resource_outputs
from ops.segment_reports import SegmentReportError, SegmentReports
from ops.target import session_path
from sandbox.accounting import (
    DirectionReport,
    account_segment_to_userflow,
    account_userflow_to_segment,
    check_segment_deliveries,
    check_segment_volume,
    render_table,
)
from sandbox.services import ServiceError, ServiceGroup, free_port
from sandbox.traffic import (
    ANONYMOUS_TRACKS,
    ECHO_EVENT,
    DemoPlan,
    Replays,
    capture_delivery,
    plan_traffic,
    redelivered_after_lost_answer,
    replayed_events,
    send_segment_calls,
)

STACK = "local"
DEFAULT_USERS = 10
DEFAULT_SEED = 7
DEFAULT_WAIT_S = 60.0
# After everything arrived, how long to keep watching for late duplicates.
SETTLE_S = 1.0
HTTP_TIMEOUT_S = 10.0

Printer = Callable[[str], None]


class DemoError(RuntimeError):
    """A demo step failed; the message says which and what to look at."""


@dataclass(frozen=True)
class StackSecrets:
    """What the local bridge and the demo's app need from the stack (never printed)."""

    app_source_id: str
    app_write_key: str
    userflow_source_id: str
    userflow_write_key: str
    shared_secret: str
    userflow_webhook_secret: str
    userflow_api_key: str
    destination_id: str
    segment_token: str  # reads Segment's own counts (Public API)

    def __repr__(self) -> str:  # a stray print or traceback must not show a secret
        return f"StackSecrets(app={self.app_source_id}, userflow={self.userflow_source_id})"


@dataclass
class DemoOutcome:
    ok: bool = False
    reports: list[DirectionReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)
    summaries: dict[str, str] = field(default_factory=dict)


def read_stack_secrets(
    engine: Engine, stack: str, config_file: Path | None = None, environment: str = STACK
) -> StackSecrets:
    """The providers' secret outputs from the stack's state, decrypted in memory."""
    deployment = engine.export(stack, show_secrets=True)
    sources = {str(o.get("slug")): o for o in resource_outputs(deployment, "segment:Source")}
    destinations = resource_outputs(deployment, "segment:WebhookDestination")
    subscriptions = resource_outputs(deployment, "userflow:WebhookSubscription")
    app = sources.get(f"app-{environment}")
    userflow = sources.get(f"userflow-{environment}")
    if app is None or userflow is None or len(destinations) != 1 or len(subscriptions) != 1:
        raise DemoError(
            f"the stack's state lacks the expected resources (sources {sorted(sources)}, "
            f"{len(destinations)} destination(s), {len(subscriptions)} Userflow subscription(s))"
        )
    config = engine.config(stack, config_file, show_secrets=True)
    api_key = config.get(API_KEY_KEY)
    if not isinstance(api_key, str):
        raise DemoError(f"the stack config has no {API_KEY_KEY}")
    token = config.get(SEGMENT_TOKEN_KEY)
    if not isinstance(token, str):
        raise DemoError(f"the stack config has no {SEGMENT_TOKEN_KEY}")
    return StackSecrets(
        app_source_id=str(app["source_id"]),
        app_write_key=str(app["write_key"]),
        userflow_source_id=str(userflow["source_id"]),
        userflow_write_key=str(userflow["write_key"]),
        shared_secret=str(destinations[0]["shared_secret"]),
        userflow_webhook_secret=str(subscriptions[0]["secret"]),
        userflow_api_key=api_key,
        destination_id=str(destinations[0]["destination_id"]),
        segment_token=token,
    )


def get_json(url: str) -> Any:
    reply = requests.get(url, timeout=HTTP_TIMEOUT_S)
    reply.raise_for_status()
    return reply.json()


def post_json(url: str, payload: Mapping[str, Any]) -> Any:
    reply = requests.post(url, json=payload, timeout=HTTP_TIMEOUT_S)
    if reply.status_code >= 400:
        raise DemoError(f"POST {url} answered {reply.status_code}: {reply.text[:300]}")
    return reply.json() if reply.content else None


@dataclass
class Observed:
    """One look at the emulators and the bridge."""

    segment: dict[str, Any]
    userflow: dict[str, Any]
    userflow_requests: list[dict[str, Any]]
    bridge: dict[str, Any]

    @classmethod
    def take(cls, segment_url: str, userflow_url: str, bridge_url: str) -> Observed:
        return cls(
            segment=get_json(f"{segment_url}/__sandbox__/state"),
            userflow=get_json(f"{userflow_url}/__sandbox__/state"),
            userflow_requests=get_json(f"{userflow_url}/__sandbox__/requests")["requests"],
            bridge=get_json(f"{bridge_url}/__sandbox__/stats"),
        )

    @property
    def quiet(self) -> bool:
        """No delivery in flight anywhere: emulator workers idle, bridge queue empty."""
        queues = self.bridge.get("queues") or {}
        return (
            not self.segment.get("deliveries_pending")
            and not self.userflow.get("deliveries_pending")
            and not queues.get("queue")
        )


def wait_for(
    label: str,
    look: Callable[[], DirectionReport],
    timeout_s: float,
    out: Printer,
) -> bool:
    """Poll `look()` until everything sent is accounted for (arrived, or skipped as designed)
    or the deadline; print progress."""
    deadline = time.monotonic() + timeout_s
    last: tuple[int, int, int] | None = None
    while True:
        report = look()
        now = (report.accounted, report.sent, report.skipped_total)
        if now != last:
            out(f"    {label}: {report.accounted}/{report.sent} accounted for "
                f"({report.arrived} arrived, {report.skipped_total} skipped)")
            last = now
        if report.accounted >= report.sent:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)


def emulators_empty(segment_url: str, userflow_url: str) -> list[str]:
    """What the emulators still hold after destroy (empty list: nothing)."""
    left: list[str] = []
    segment = get_json(f"{segment_url}/__sandbox__/state")
    for key in ("sources", "destinations", "subscriptions"):
        if segment.get(key):
            left.append(f"Segment emulator still holds {len(segment[key])} {key}")
    userflow = get_json(f"{userflow_url}/__sandbox__/state")
    subs = userflow.get("webhook_subscriptions") or userflow.get("subscriptions")
    if subs:
        left.append(f"Userflow emulator still holds {len(subs)} webhook subscriptions")
    return left


def run_demo(
    users: int = DEFAULT_USERS,
    seed: int = DEFAULT_SEED,
    keep: bool = False,
    state_dir: Path = DEFAULT_STATE_DIR,
    wait_s: float = DEFAULT_WAIT_S,
    out: Printer = print,
    bridge_env: Mapping[str, str] | None = None,
) -> DemoOutcome:
    """The demo (module docstring). `bridge_env` adds to or replaces the local bridge's
    environment: how a test gives it, say, a wrong SEGMENT_WRITE_KEY."""
    outcome = DemoOutcome()
    engine = Engine(state_dir=state_dir, on_line=lambda line: out(f"    │ {line}"))
    plan = plan_traffic(users, seed)
    refuse_if_running(state_dir)
    with ServiceGroup() as group:
        out("① starting the Segment and Userflow emulators")
        segment = group.start("segment")
        userflow = group.start("userflow")
        bridge_url = f"http://127.0.0.1:{free_port()}"
        outcome.urls = {"segment": segment.url, "userflow": userflow.url, "bridge": bridge_url}
        out(f"    Segment {segment.url}  Userflow {userflow.url}  bridge (next) {bridge_url}")
        overrides = {
            "bridgeUrl": bridge_url,
            "segmentApiUrl": segment.url,
            "segmentTrackingUrl": segment.url,
            "userflowApiUrl": userflow.url,
        }
        engine.ensure_stack(STACK)
        with engine.config_copy(STACK, overrides) as config_file:
            _forget_leftovers(engine, out)
            out(f"② pulumi up --stack {STACK}")
            try:
                up = engine.up(STACK, config_file)
                outcome.summaries["up"] = str(up.summary)
                secrets = read_stack_secrets(engine, STACK, config_file)
                out("③ starting the local bridge with the stack's secrets")
                # Its queues and ledger live in their own process, started first and so
                # stopped last: a bridge that dies loses nothing it acknowledged.
                aws = group.start("aws")
                group.start("bridge", port=int(bridge_url.rsplit(":", 1)[1]), env={
                    "BRIDGE_AWS_ENDPOINT_URL": aws.url,
                    "USERFLOW_API_URL": userflow.url,
                    "USERFLOW_API_KEY": secrets.userflow_api_key,
                    "SEGMENT_TRACKING_URL": segment.url,
                    "SEGMENT_WRITE_KEY": secrets.userflow_write_key,
                    "SEGMENT_SHARED_SECRET": secrets.shared_secret,
                    "USERFLOW_WEBHOOK_SECRET": secrets.userflow_webhook_secret,
                    **(bridge_env or {}),
                })
                session = session_path(state_dir, STACK)
                session.write_text(json.dumps({
                    "bridgeUrl": bridge_url, "userflowApiUrl": userflow.url,
                    "segmentApiUrl": segment.url}), encoding="utf-8")
                outcome.reports = _drive(plan, secrets, segment.url, userflow.url, bridge_url,
                                         wait_s, out)
                out("⑥ results (latency: send → arrival in the target emulator)")
                out(render_table(outcome.reports))
                for report in outcome.reports:
                    outcome.problems += [f"{report.name}: {p}" for p in report.problems]
                if keep:
                    _hold(outcome.urls, state_dir, out)
            except KeyboardInterrupt:
                out("interrupted: destroying the stack and stopping everything")
                raise
            finally:
                # Also after a failed or interrupted `up`: whatever it created goes again.
                session_path(state_dir, STACK).unlink(missing_ok=True)
                out(f"⑦ pulumi destroy --stack {STACK}")
                try:
                    destroyed = engine.destroy(STACK, config_file)
                    outcome.summaries["destroy"] = str(destroyed.summary)
                    outcome.problems += emulators_empty(segment.url, userflow.url)
                except EngineError as exc:
                    outcome.problems.append(f"destroy failed: {exc}")
        if outcome.problems or not all(r.ok for r in outcome.reports):
            # What the processes said last is usually where the cause is.
            for service in group.services:
                tail = [line for line in service.tail if line.strip()][-8:]
                if tail:
                    out(f"last output of the {service.name}:")
                    out("\n".join(f"    {line}" for line in tail))
    outcome.ok = (not outcome.problems and len(outcome.reports) == 2
                  and all(r.ok for r in outcome.reports))
    return outcome


def _forget_leftovers(engine: Engine, out: Printer) -> None:
    """A demo killed hard leaves resources in the state whose emulators died with it (they
    keep everything in memory): nothing of them exists any more, so the state forgets them.
    (A refresh cannot do it: it would configure the providers with the dead emulators' URLs
    recorded in the state.)"""
    deployment = engine.export(STACK)
    resources = deployment.get("deployment", {}).get("resources") or []
    if any(str(r.get("type", "")).startswith("pulumi-python:dynamic") for r in resources):
        out("    the stack remembers resources of an earlier run whose emulators are gone: "
            "forgetting them")
        engine.forget_resources(STACK)


def refuse_if_running(state_dir: Path) -> None:
    """A `--keep` demo on the same state still serves: a second one would clobber its stack."""
    session = session_path(state_dir, STACK)
    if not session.exists():
        return
    try:
        urls = json.loads(session.read_text(encoding="utf-8"))
        requests.get(str(urls["bridgeUrl"]) + "/health", timeout=2)
    except (requests.RequestException, ValueError, KeyError, TypeError):
        session.unlink(missing_ok=True)  # stale: that demo is gone
        return
    raise DemoError(
        f"another demo is running on {state_dir} (bridge {urls['bridgeUrl']}): stop it "
        "(Ctrl-C in its terminal) or pass --state-dir"
    )


def _drive(
    plan: DemoPlan,
    secrets: StackSecrets,
    segment_url: str,
    userflow_url: str,
    bridge_url: str,
    wait_s: float,
    out: Printer,
) -> list[DirectionReport]:
    started = datetime.now(UTC)
    calls = len(plan.calls)
    anonymous = plan.skips_segment_to_userflow.get(SKIP_NO_USER_ID, 0)
    out(f"④ Segment → Userflow: {calls} calls ({plan.count('identify')} identify, "
        f"{plan.count('track')} track, {plan.count('group')} group) via segment-analytics-python")
    out(f"    by design, {anonymous} of the tracks are anonymous-only (no userId): the bridge "
        "must skip them (no_user_id)")
    out(f"    and {plan.echoes} is named {ECHO_EVENT!r} like a Userflow built-in: Userflow sends "
        "it back by webhook, the bridge must drop it (echo)")
    sent_at = send_segment_calls(plan.calls, secrets.app_write_key, segment_url)

    def look_s2u() -> DirectionReport:
        seen = Observed.take(segment_url, userflow_url, bridge_url)
        return account_segment_to_userflow(plan, sent_at, seen.userflow,
                                           seen.userflow_requests, seen.bridge)

    if not wait_for("Segment → Userflow", look_s2u, wait_s, out):
        out("    not everything arrived in time: the table shows what is missing")
    replays, replay_problem = send_replay(plan, segment_url, secrets.destination_id, out)

    out(f"⑤ Userflow → Segment: {len(plan.activities)} simulated activities "
        f"({plan.userflow_events} Userflow events, plus {plan.echoes} echo from ④)")
    for activity in plan.activities:
        payload: dict[str, Any] = {"user_id": activity.user_id, "activity": activity.activity}
        if activity.group_id:
            payload["group_id"] = activity.group_id
        post_json(f"{userflow_url}/__sandbox__/simulate", payload)

    def look_u2s() -> DirectionReport:
        seen = Observed.take(segment_url, userflow_url, bridge_url)
        return account_userflow_to_segment(plan, seen.segment, secrets.userflow_source_id,
                                           secrets.app_source_id, seen.bridge)

    if not wait_for("Userflow → Segment", look_u2s, wait_s, out):
        out("    not everything arrived in time: the table shows what is missing")

    # Let in-flight deliveries and retries finish, then look once more for late duplicates.
    deadline = time.monotonic() + wait_s / 4
    seen = Observed.take(segment_url, userflow_url, bridge_url)
    while not seen.quiet and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = Observed.take(segment_url, userflow_url, bridge_url)
    time.sleep(SETTLE_S)
    seen = Observed.take(segment_url, userflow_url, bridge_url)
    replays = Replays(replays.on_purpose,
                      redelivered_after_lost_answer(plan, seen.segment.get("deliveries") or [],
                                                    secrets.destination_id),
                      replays.message_ids)
    if replays.redelivered:
        out(f"    Segment itself resent {replays.redelivered} accepted event(s) after a lost "
            f"answer: {SKIP_REPLAY} skips too")
    s2u = account_segment_to_userflow(plan, sent_at, seen.userflow, seen.userflow_requests,
                                      seen.bridge, replays)
    if replay_problem:
        s2u.problems.append(replay_problem)
    u2s = account_userflow_to_segment(plan, seen.segment, secrets.userflow_source_id,
                                      secrets.app_source_id, seen.bridge)
    _add_segment_counts(plan, secrets, segment_url, started, s2u, u2s)
    return [s2u, u2s]


def send_replay(
    plan: DemoPlan, segment_url: str, destination_id: str, out: Printer
) -> tuple[Replays, str | None]:
    """Resend one delivery Segment's emulator made and the bridge accepted, byte for byte with
    its X-Signature (from the emulator's delivery log): a captured request replayed. Returns
    the replay skips it must cause and a problem if it was not answered 2xx."""
    deliveries = get_json(f"{segment_url}/__sandbox__/state").get("deliveries") or []
    captured = capture_delivery(plan, deliveries, destination_id)
    if captured is None:
        return Replays(), "no delivery the bridge accepted was found to replay"
    ids = ", ".join(captured.message_ids)
    out(f"    replay: resending Segment's delivery of {ids} with its X-Signature, as someone "
        f"who captured it would: the bridge must answer 200, enqueue nothing ({SKIP_REPLAY})")
    replays = Replays(on_purpose=replayed_events(plan, captured.message_ids),
                      message_ids=captured.message_ids)
    reply = requests.post(captured.url, data=captured.body, timeout=HTTP_TIMEOUT_S, headers={
        "Content-Type": "application/json", "X-Signature": captured.signature})
    if not 200 <= reply.status_code < 300:
        return replays, (f"the replayed delivery of {ids} was answered {reply.status_code}, "
                         f"not 2xx: {reply.text[:200]}")
    return replays, None


def _add_segment_counts(
    plan: DemoPlan,
    secrets: StackSecrets,
    segment_url: str,
    started: datetime,
    s2u: DirectionReport,
    u2s: DirectionReport,
) -> None:
    """Segment's own counts beside the bridge's, from its Public API, over the demo's window
    (whole minutes: the reports' granularity; endTime is exclusive, hence a minute ahead)."""
    reports = SegmentReports(segment_url, secrets.segment_token)
    since = started.replace(second=0, microsecond=0)
    until = datetime.now(UTC) + timedelta(minutes=1)
    deliveries = reports.deliveries(secrets.destination_id, secrets.app_source_id, since, until)
    check_segment_deliveries(s2u, deliveries.successes, deliveries.failures, len(plan.calls))
    check_segment_volume(u2s, reports.event_volume(secrets.userflow_source_id, since, until))


def _hold(urls: Mapping[str, str], state_dir: Path, out: Printer) -> None:
    out("")
    out("--keep: everything stays up until Ctrl-C (then the stack is destroyed):")
    for name, url in urls.items():
        out(f"    {name:<9} {url}")
    out(f"    inspect   {urls['segment']}/__sandbox__/state  "
        f"{urls['userflow']}/__sandbox__/state  {urls['bridge']}/__sandbox__/stats")
    out(f"    state     {state_dir} (stack {STACK})")
    extra = "" if state_dir == DEFAULT_STATE_DIR else f" --state-dir {state_dir}"
    out(f"    verify    python -m ops verify --stack {STACK}{extra}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        out("")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox demo",
        description="The whole Userflow <-> Segment integration offline, in one command: "
                    "emulators, pulumi up, the local bridge, traffic both ways, one table, "
                    "pulumi destroy. Exit 0 only if every event arrived exactly once and the "
                    "bridge skipped exactly what was sent to be skipped.",
    )
    parser.add_argument("--events", type=int, default=DEFAULT_USERS, metavar="N",
                        help="users to simulate: each is identified, tracked and grouped via "
                             "Segment, then starts and completes a flow in Userflow (every "
                             "other one also a checklist task); on top, every run sends "
                             f"{ANONYMOUS_TRACKS} anonymous-only tracks (skipped: no_user_id), "
                             "one track that comes back from Userflow (skipped: echo), and "
                             "resends one delivery Segment made, byte for byte with its "
                             "signature (answered 200, skipped: replay, never delivered "
                             f"twice); default {DEFAULT_USERS}")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="seed of the generated users and events")
    parser.add_argument("--keep", action="store_true",
                        help="leave everything running, print the URLs, wait for Ctrl-C")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="the Pulumi file backend (default .pulumi-state/)")
    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT_S,
                        help="seconds to wait for deliveries per direction")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.events < 1:
        print("--events must be at least 1", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        outcome = run_demo(args.events, args.seed, args.keep, args.state_dir, args.wait)
    except KeyboardInterrupt:
        print("demo interrupted; the emulators and the bridge are stopped", file=sys.stderr)
        return 130
    except (EngineError, ServiceError, DemoError, SegmentReportError,
            requests.RequestException) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    print("")
    for step, summary in outcome.summaries.items():
        print(f"pulumi {step}: {summary}")
    for problem in outcome.problems:
        print(f"PROBLEM {problem}")
    verdict = ("PASS: every event arrived exactly once, every designed skip was skipped"
               if outcome.ok else "FAIL")
    print(f"{verdict} ({time.monotonic() - started:.0f} s)")
    return 0 if outcome.ok else 1
