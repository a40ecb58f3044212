"""Our users' GitHub Actions workflow: actionlint-clean, and safe by construction.

The security properties are read from the parsed YAML: which jobs run on which event (each
job's `if:` evaluated for that event), which secrets and variables each of them can see,
with which permissions, and in which GitHub environment. A pull request runs the PR's own
program code, so nothing it can reach may write. One engine test holds the measurement the
preview job rests on: a preview of the local stack calls neither Segment nor Userflow.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.engine import Engine
from sandbox.segment import SegmentEmulator
from sandbox.services import free_port
from sandbox.userflow import UserflowEmulator

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "pulumi.yml"
ACTIONLINT = ROOT / ".tools" / "bin" / "actionlint"
REPO = "acme/integrations"  # any name: what matters is same repository or not

DEPLOY_ENVIRONMENTS = {"staging", "production"}
PREVIEW_ENVIRONMENTS = {"staging-preview", "production-preview"}
# The only credential a pull request may hold: Pulumi stack read (docs/ci.md).
PREVIEW_SECRETS = {"PULUMI_PREVIEW_TOKEN"}
# What the preview job sets instead of the Segment and Userflow credentials.
STAND_IN = "not-a-credential-preview-calls-no-api"


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    assert ACTIONLINT.exists(), "actionlint is missing: run `make setup`"
    return subprocess.run([str(ACTIONLINT), "-no-color", str(path)],
                          capture_output=True, text=True, check=False)


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def jobs() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = load()["jobs"]
    return found


# -- GitHub expressions: just enough of the language to evaluate the jobs' `if:` ----------

_TOKEN = re.compile(r"\s*(?:(==|!=|&&|\|\||!|\(|\))|'((?:[^']|'')*)'|([A-Za-z_][\w.\-]*))")


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        assert match, f"unsupported expression syntax at {text[pos:]!r}"
        op, literal, name = match.groups()
        if op:
            out.append(("op", op))
        elif literal is not None:
            out.append(("str", literal.replace("''", "'")))
        else:
            out.append(("name", name))
        pos = match.end()
    return out


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    """The value of a GitHub `if:` expression (==, !=, &&, ||, !, parentheses, literals)."""
    tokens = _tokens(expression.strip().removeprefix("${{").removesuffix("}}"))

    def peek() -> tuple[str, str] | None:
        return tokens[0] if tokens else None

    def primary() -> Any:
        kind, text = tokens.pop(0)
        if (kind, text) == ("op", "("):
            value = either()
            assert tokens.pop(0) == ("op", ")")
            return value
        if (kind, text) == ("op", "!"):
            return not primary()
        if kind == "str":
            return text
        if text in ("true", "false"):
            return text == "true"
        assert text in context, f"the test does not know the context value {text!r}"
        return context[text]

    def comparison() -> Any:
        left = primary()
        while peek() in (("op", "=="), ("op", "!=")):
            op = tokens.pop(0)[1]
            right = primary()
            # GitHub compares strings case-insensitively.
            same = str(left).lower() == str(right).lower()
            left = same if op == "==" else not same
        return left

    def both() -> Any:
        left = comparison()
        while peek() == ("op", "&&"):
            tokens.pop(0)
            right = comparison()
            left = left and right
        return left

    def either() -> Any:
        left = both()
        while peek() == ("op", "||"):
            tokens.pop(0)
            right = both()
            left = left or right
        return left

    value = either()
    assert not tokens, f"unparsed rest of the expression: {tokens}"
    return value


@dataclass(frozen=True)
class Trigger:
    """One way the workflow can start."""

    event: str
    ref: str
    head_repo: str | None = None  # the PR's head repository (pull_request only)

    def context(self) -> dict[str, Any]:
        return {
            "github.event_name": self.event,
            "github.ref": self.ref,
            "github.repository": REPO,
            "github.event.pull_request.head.repo.full_name": self.head_repo or "",
        }


SAME_REPO_PR = Trigger("pull_request", "refs/pull/7/merge", REPO)
FORK_PR = Trigger("pull_request", "refs/pull/8/merge", "stranger/integrations")
PUSH_MAIN = Trigger("push", "refs/heads/main")
DISPATCH_MAIN = Trigger("workflow_dispatch", "refs/heads/main")
DISPATCH_BRANCH = Trigger("workflow_dispatch", "refs/heads/feature")


def triggers() -> dict[str, Any]:
    """The workflow's `on:` (PyYAML reads the bare key `on` as the boolean True)."""
    on: dict[str, Any] = load().get("on") or load()[True]  # type: ignore[index]
    return on


def triggered(trigger: Trigger) -> bool:
    """Whether the workflow's `on:` starts for this trigger at all."""
    on = triggers()
    if trigger.event not in on:
        return False
    branches = (on[trigger.event] or {}).get("branches")
    if branches is None or trigger.event == "pull_request":
        return True  # a PR's `branches` filter names its base, always main here
    return trigger.ref.removeprefix("refs/heads/") in branches


def running_jobs(trigger: Trigger) -> set[str]:
    """The jobs that run for `trigger`: `on:` matches, `if:` holds, and so did every need."""
    if not triggered(trigger):
        return set()
    all_jobs = jobs()
    decided: dict[str, bool] = {}

    def runs(name: str) -> bool:
        if name not in decided:
            job = all_jobs[name]
            needs = job.get("needs") or []
            needs = [needs] if isinstance(needs, str) else needs
            condition = job.get("if")
            decided[name] = all(runs(n) for n in needs) and (
                condition is None or bool(evaluate(str(condition), trigger.context()))
            )
        return decided[name]

    return {name for name in all_jobs if runs(name)}


# -- what a job can see ---------------------------------------------------------------------

def _references(node: Any, context: str) -> set[str]:
    return set(re.findall(rf"\b{context}\.([A-Za-z_][A-Za-z0-9_]*)", json.dumps(node)))


def secrets_seen(name: str) -> set[str]:
    """Every `secrets.X` the job (or the workflow-wide env it inherits) names."""
    return _references(jobs()[name], "secrets") | _references(load().get("env"), "secrets")


def vars_seen(name: str) -> set[str]:
    return _references(jobs()[name], "vars") | _references(load().get("env"), "vars")


def environments(name: str) -> set[str]:
    """The GitHub environments the job runs in (a matrix expands to several)."""
    job = jobs()[name]
    env = job.get("environment")
    env = env.get("name") if isinstance(env, dict) else env
    if env is None:
        return set()
    stacks = ((job.get("strategy") or {}).get("matrix") or {}).get("stack") or [""]
    return {str(env).replace("${{ matrix.stack }}", str(stack)) for stack in stacks}


def steps_using(name: str, action: str) -> list[dict[str, Any]]:
    return [s for s in jobs()[name]["steps"] if str(s.get("uses", "")).startswith(action)]


def step_index(name: str, predicate: Any) -> int:
    for i, step in enumerate(jobs()[name]["steps"]):
        if predicate(step):
            return i
    raise AssertionError(f"job {name} has no such step")


def deploy_jobs() -> set[str]:
    """Jobs that run `pulumi up` (through pulumi/actions or the CLI)."""
    found = set()
    for name in jobs():
        for step in jobs()[name]["steps"]:
            command = str((step.get("with") or {}).get("command", ""))
            if command in ("up", "update") or "pulumi up" in str(step.get("run", "")):
                found.add(name)
    return found


def sdk_pin() -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"\s*pulumi\s*==\s*([\w.]+)", line)
        if match:
            return match.group(1)
    raise AssertionError("requirements.txt pins no pulumi version")


# -- tests ------------------------------------------------------------------------------------

def test_actionlint_accepts_the_workflow() -> None:
    result = actionlint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_would_catch_a_broken_workflow(tmp_path: Path) -> None:
    # GIVEN the same workflow with a job depending on one that does not exist
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(WORKFLOW.read_text().replace("needs: staging", "needs: stagign"))
    # THEN the linter fails it, naming the problem
    result = actionlint(broken)
    assert result.returncode != 0
    assert "stagign" in result.stdout


def test_the_expression_reader_is_faithful() -> None:
    # The tests below rest on this evaluator: it must read what GitHub reads.
    ctx = SAME_REPO_PR.context()
    assert evaluate("github.event_name == 'pull_request'", ctx) is True
    assert evaluate("github.event_name != 'pull_request' && github.ref == 'refs/heads/main'",
                    ctx) is False
    assert evaluate("!(github.ref == 'refs/heads/main') || false", ctx) is True
    assert evaluate("${{ github.repository == 'ACME/Integrations' }}", ctx) is True


@pytest.mark.parametrize(("trigger", "expected"), [
    (SAME_REPO_PR, {"preview"}),
    (FORK_PR, set()),
    (PUSH_MAIN, {"staging", "production"}),
    (DISPATCH_MAIN, {"staging", "production"}),
    (DISPATCH_BRANCH, set()),
    (Trigger("push", "refs/heads/feature"), set()),
], ids=["same-repo PR", "fork PR", "push main", "dispatch main", "dispatch branch",
        "push branch"])
def test_which_jobs_run_on_which_event(trigger: Trigger, expected: set[str]) -> None:
    assert running_jobs(trigger) == expected


def test_no_trigger_runs_a_pr_with_the_base_repositorys_secrets() -> None:
    # pull_request_target and workflow_run run with the base repository's secrets even for a
    # fork's PR; this workflow must never need them.
    assert set(triggers()) == {"pull_request", "push", "workflow_dispatch"}


def test_a_fork_pull_request_gets_no_credential_at_all() -> None:
    seen = set().union(*(secrets_seen(n) | vars_seen(n) for n in running_jobs(FORK_PR)))
    assert seen == set()


def test_pull_request_jobs_hold_no_write_capable_credential() -> None:
    for name in running_jobs(SAME_REPO_PR):
        # Only the stack-read Pulumi token: no deploy token, no Segment/Userflow secret.
        assert secrets_seen(name) <= PREVIEW_SECRETS, name
        # The AWS role it may assume is the read-only one, named as such.
        roles = {v for v in vars_seen(name) if v.endswith("ROLE_ARN")}
        assert roles == {"PREVIEW_ROLE_ARN"}, name
        for step in steps_using(name, "aws-actions/configure-aws-credentials"):
            assert step["with"]["role-to-assume"] == "${{ vars.PREVIEW_ROLE_ARN }}"
        # Its secrets come from the preview environments, never a deploy one.
        assert environments(name) and environments(name) <= PREVIEW_ENVIRONMENTS, name


def test_preview_credentials_carry_their_own_names() -> None:
    # Reading the file shows which job can write: no name is shared across the line.
    preview = set().union(*(secrets_seen(n) | vars_seen(n) for n in running_jobs(SAME_REPO_PR)))
    deploy = set().union(*(secrets_seen(n) | vars_seen(n) for n in deploy_jobs()))
    credentials = {n for n in preview | deploy if n.endswith(("TOKEN", "KEY", "ROLE_ARN"))}
    assert credentials & preview & deploy == set()


def test_nothing_is_granted_workflow_wide() -> None:
    workflow = load()
    # Permissions and secrets set at the top would reach every job, PR jobs included.
    assert workflow.get("permissions") == {}
    assert _references(workflow.get("env"), "secrets") == set()


@pytest.mark.parametrize(("name", "expected"), [
    ("preview", {"contents": "read", "id-token": "write", "pull-requests": "write"}),
    ("staging", {"contents": "read", "id-token": "write"}),
    ("production", {"contents": "read", "id-token": "write"}),
])
def test_each_job_has_minimal_permissions(name: str, expected: dict[str, str]) -> None:
    assert jobs()[name].get("permissions") == expected


def test_every_secret_is_environment_scoped() -> None:
    # A job outside an environment can only see repository secrets, which every PR sees too.
    for name in jobs():
        if secrets_seen(name):
            assert environments(name) <= DEPLOY_ENVIRONMENTS | PREVIEW_ENVIRONMENTS, name
            assert environments(name), f"{name} reads secrets outside any environment"


def test_up_runs_only_from_main_in_a_deploy_environment() -> None:
    assert deploy_jobs() == {"staging", "production"}
    for trigger in (SAME_REPO_PR, FORK_PR, DISPATCH_BRANCH):
        assert deploy_jobs() & running_jobs(trigger) == set()
    for name in deploy_jobs():
        assert environments(name) <= DEPLOY_ENVIRONMENTS
        # And the job itself refuses other refs, whatever triggers the workflow.
        for event in ("push", "workflow_dispatch", "pull_request"):
            other = Trigger(event, "refs/heads/feature", REPO).context()
            assert not evaluate(str(jobs()[name]["if"]), other), name


def test_production_waits_for_staging_verify_and_an_approval() -> None:
    all_jobs = jobs()
    # The approval is the GitHub environment's required reviewers (docs/ci.md).
    assert environments("production") == {"production"}
    assert all_jobs["production"]["needs"] in ("staging", ["staging"])
    # staging's verify runs after its up, in the job production needs.
    up = step_index("staging", lambda s: (s.get("with") or {}).get("command") == "up")
    verify = step_index("staging", lambda s: " verify --stack" in str(s.get("run", "")))
    assert up < verify


def test_previews_both_stacks_with_a_pr_comment_and_no_refresh() -> None:
    preview = jobs()["preview"]
    assert preview["strategy"]["matrix"]["stack"] == ["staging", "production"]
    runs = [s["with"] for s in steps_using("preview", "pulumi/actions")
            if (s.get("with") or {}).get("command") == "preview"]
    assert len(runs) == 1
    assert runs[0]["comment-on-pr"] is True
    # A refresh would read Segment/Userflow with the deploy credentials kept in the state.
    assert runs[0]["refresh"] is False


def test_the_cli_is_the_sdk_version() -> None:
    workflow_pin = str(load()["env"]["PULUMI_VERSION"])
    assert workflow_pin == sdk_pin()
    for name in jobs():
        steps = steps_using(name, "pulumi/actions")
        assert steps, name
        for step in steps:
            assert step["with"]["pulumi-version"] == "${{ env.PULUMI_VERSION }}", name


def test_no_secret_is_written_inline() -> None:
    text = WORKFLOW.read_text()
    for key in ("SEGMENT_TOKEN", "USERFLOW_API_KEY", "PULUMI_ACCESS_TOKEN"):
        for line in text.splitlines():
            if re.match(rf"\s*{key}:", line):
                assert "${{ secrets." in line, line
    assert not re.search(r"ak_[A-Za-z0-9]{6,}", text)


def test_the_preview_job_sets_stand_ins_not_credentials() -> None:
    runs = " ".join(str(s.get("run", "")) for s in jobs()["preview"]["steps"])
    for key in ("segmentToken", "userflowApiKey"):
        assert f"{key} {STAND_IN}" in runs


# -- the measurement the preview job rests on: a preview calls neither API -------------------

Emulators = tuple[SegmentEmulator, UserflowEmulator]


def _marks(emulators: Emulators) -> tuple[int, ...]:
    return tuple(len(e.request_log()) for e in emulators)


def _api_calls_since(emulators: Emulators, marks: tuple[int, ...]) -> list[tuple[str, int]]:
    """(method and path, status) of each API call the emulators received after `marks`."""
    return [(f"{r['method']} {r['path']}", int(r["status"]))
            for e, mark in zip(emulators, marks, strict=True) for r in e.request_log()[mark:]]


@pytest.mark.engine
def test_preview_calls_neither_api_and_refresh_uses_the_states_credentials(
    tmp_path: Path,
) -> None:
    with SegmentEmulator() as segment, UserflowEmulator() as userflow:
        engine = Engine(state_dir=tmp_path / "state")
        engine.ensure_stack("local")
        urls = {"bridgeUrl": f"http://127.0.0.1:{free_port()}", "segmentApiUrl": segment.url,
                "segmentTrackingUrl": segment.url, "userflowApiUrl": userflow.url}
        # GIVEN the local stack deployed with the sandbox's real credentials
        with engine.config_copy("local", urls) as deployed:
            engine.up("local", deployed)
        try:
            # WHEN a PR previews it with the workflow's stand-ins and an update pending
            pending: dict[str, object] = {**urls, "segmentEventTypes": ["identify"]}
            with engine.config_copy("local", pending) as pr_config:
                for key in ("segmentToken", "userflowApiKey"):
                    engine.command(["config", "set", "--secret", f"userflow-segment:{key}",
                                    STAND_IN, "--stack", "local", "--config-file", str(pr_config)])
                emulators = (segment, userflow)
                before = _marks(emulators)
                preview = engine.preview("local", pr_config)
                # THEN it succeeds and shows the update without calling Segment or Userflow
                assert preview.summary.count("update") == 1
                assert _api_calls_since(emulators, before) == []
                # AND a refresh reads both APIs successfully although the config holds only
                # stand-ins: it uses the deploy credentials kept in the state (hence no
                # refresh in a PR)
                refreshed = engine.command(["preview", "--refresh", "--stack", "local",
                                        "--config-file", str(pr_config)])
                assert refreshed.code == 0
                reads = _api_calls_since(emulators, before)
                assert reads and all(c.startswith("GET ") and s == 200 for c, s in reads)
        finally:
            with engine.config_copy("local", urls) as deployed:
                engine.destroy("local", deployed)
