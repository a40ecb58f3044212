"""The one driver of the Pulumi engine for the sandbox, `verify` and the engine tests.

Stack operations go through Pulumi's Automation API (`pulumi.automation`, shipped with the
SDK): a `LocalWorkspace` on the project directory, `Stack.preview/up/refresh/destroy` with
`on_event` (the engine's structured events, from which the change summary is read) and
`on_output` (progress lines). What it cannot do stays here, each for a stated reason:

- Running the CLI. `PulumiCommand` looks for `<root>/bin/pulumi` (ours is
  `.tools/pulumi/pulumi` or a `pulumi` on PATH), can only add to the caller's environment
  (a sandbox run must drop a user's `PULUMI_CONFIG_PASSPHRASE_FILE` and
  `PULUMI_ACCESS_TOKEN`), has no timeout, and on Ctrl-C closes the engine's pipes at once,
  which kills the engine before it releases the stack's lock. `_Cli` is a `PulumiCommand`
  whose `run` keeps those guarantees; the workspace runs every command through it.
- Two commands without an Automation API verb, run through the same `_Cli`:
  `pulumi config --config-file` (the workspace's `get_all_config` reads only the committed
  stack file, and always decrypts) and `pulumi state delete --all`.

Every sandbox run is offline and self-contained: a file backend (the repo's `.pulumi-state/`
or a directory the caller gives), a passphrase secrets provider, the engine's home under
`.tools/pulumi-home` (so nothing touches the user's `~/.pulumi`), no update checks and no
plugin downloads. Stack operations read a temporary copy of the stack file
(`--config-file`), so a run never rewrites the committed `Pulumi.<stack>.yaml`.

Secrets: output of commands that reveal them (anything run with `--show-secrets`) is never
streamed and never goes into an exception message.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pulumi import automation as auto
from semver import VersionInfo

from components.project import PROJECT

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = REPO_ROOT / ".tools" / "pulumi"
ENGINE_HOME = REPO_ROOT / ".tools" / "pulumi-home"
DEFAULT_STATE_DIR = REPO_ROOT / ".pulumi-state"
PROJECT_NAME = PROJECT
CONFIG_NAMESPACE = PROJECT

# Sandbox-only passphrase: it protects nothing but the committed sandbox credentials, which
# are public anyway (docs/ARCHITECTURE.md). A real stack uses its own secrets provider.
SANDBOX_PASSPHRASE = "userflow-segment-sandbox"  # noqa: S105 - documented sandbox value
PASSPHRASE_ENV = "PULUMI_CONFIG_PASSPHRASE"  # noqa: S105 - a variable name

# Marker the engine puts around secret values in `stack export --show-secrets`.
_SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"  # noqa: S105 - public engine constant
_SECRET_SIG_VALUE = "1b47061264138c4ac30d75fd1eb44270"  # noqa: S105 - public engine constant

# How a secret reads wherever it is not asked for (the CLI's own mask).
SECRET_MASK = "[secret]"  # noqa: S105 - a placeholder, not a secret
DEFAULT_TIMEOUT_S = 600.0

# The engine's words when it cannot decrypt, first match wins: no passphrase in the
# environment, a passphrase that is not the stack's (both from pkg/secrets/passphrase in
# github.com/pulumi/pulumi), or a cloud secrets provider (awskms://, gcpkms://, ...) that
# refused or could not be reached.
SecretsTrouble = Literal["no passphrase", "wrong passphrase", "secrets provider"]
_SECRETS_TROUBLE: tuple[tuple[re.Pattern[str], SecretsTrouble], ...] = (
    (re.compile(r"passphrase must be set"), "no passphrase"),
    (re.compile(r"incorrect passphrase"), "wrong passphrase"),
    (re.compile(r"decrypt|secrets manager|secrets provider", re.IGNORECASE), "secrets provider"),
)

LineSink = Callable[[str], None]


class EngineError(RuntimeError):
    """The Pulumi CLI is missing or a command failed (the message carries its stderr)."""


class EngineMissing(EngineError):
    """No Pulumi CLI: `make setup` builds one into .tools/pulumi."""


class SecretsUnavailable(EngineError):
    """The engine cannot decrypt the stack's secrets; `trouble` says why."""

    def __init__(self, message: str, trouble: SecretsTrouble) -> None:
        super().__init__(message)
        self.trouble: SecretsTrouble = trouble


def find_engine() -> Path:
    """The CLI built by `make setup`, else a `pulumi` on PATH."""
    built = TOOLS_DIR / "pulumi"
    if built.is_file() and os.access(built, os.X_OK):
        return built
    on_path = shutil.which("pulumi")
    if on_path:
        return Path(on_path)
    raise EngineMissing(
        "the Pulumi CLI was not found in .tools/pulumi/ or on PATH: run `make setup` "
        "(it builds the pinned engine offline; see scripts/ensure-engine.sh)"
    )


@dataclass(frozen=True)
class ChangeSummary:
    """Resource counts per operation (`create`, `update`, `delete`, `same`, ...) of one run."""

    counts: Mapping[str, int]

    def count(self, op: str) -> int:
        return int(self.counts.get(op, 0))

    @property
    def changes(self) -> int:
        """Everything that is not `same`: a converged stack previews with zero."""
        return sum(n for op, n in self.counts.items() if op != "same")

    def __str__(self) -> str:
        parts = [f"{op} {n}" for op, n in sorted(self.counts.items()) if n]
        return ", ".join(parts) or "nothing"


@dataclass(frozen=True)
class RunResult:
    """What one engine operation did: its summary and the output it printed."""

    command: tuple[str, ...]
    summary: ChangeSummary
    stdout: str
    stderr: str


def summarize(events: Iterable[auto.EngineEvent]) -> ChangeSummary:
    """The change summary of one operation: its (last) summary event."""
    found = [e.summary_event for e in events if e.summary_event is not None]
    if not found:
        raise EngineError("the engine sent no summary event (did the run finish?)")
    changes = found[-1].resource_changes or {}
    # Keys are plain strings from the event stream, or `OpType` members.
    return ChangeSummary({str(getattr(op, "value", op)): int(n) for op, n in changes.items()})


def unwrap_secrets(value: Any) -> Any:
    """Replace the engine's secret envelopes in a `--show-secrets` export by their values."""
    if isinstance(value, dict):
        if value.get(_SECRET_SIG_KEY) == _SECRET_SIG_VALUE:
            if "plaintext" in value:
                return unwrap_secrets(json.loads(value["plaintext"]))
            if "value" in value:
                return unwrap_secrets(value["value"])
            raise EngineError("a secret in the export is still encrypted (wrong passphrase?)")
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


def mask_secrets(value: Any) -> Any:
    """Replace every secret envelope (encrypted or not) by `[secret]`."""
    if isinstance(value, dict):
        if value.get(_SECRET_SIG_KEY) == _SECRET_SIG_VALUE:
            return SECRET_MASK
        return {k: mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def resource_outputs(deployment: Mapping[str, Any], type_suffix: str) -> list[dict[str, Any]]:
    """Outputs of every resource whose type ends with `type_suffix` (e.g. `segment:Source`)."""
    resources = deployment.get("deployment", deployment).get("resources") or []
    found: list[dict[str, Any]] = []
    for res in resources:
        if str(res.get("type", "")).endswith(type_suffix):
            found.append(dict(res.get("outputs") or {}))
    return found


def stack_file(stack: str, project_dir: Path = REPO_ROOT) -> Path:
    return project_dir / f"Pulumi.{stack}.yaml"


class _Cli(auto.PulumiCommand):
    """The CLI as the Automation API runs it, with the guarantees it lacks (module docstring).

    The workspace hands every command to `run`; this class decides the process environment,
    what is streamed, what an error may show, the timeout and the Ctrl-C handling. A failure
    raises `EngineError`, not the SDK's `CommandError`; the one SDK path that catches the
    latter, `Stack.create_or_select`, is not used (`Engine.ensure_stack` lists stacks).
    """

    def __init__(self, binary: Path, env: Callable[[], dict[str, str]],
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        # Not `super().__init__()`: it looks for `<root>/bin/pulumi`, and runs `pulumi version`
        # in the caller's environment.
        self.command = str(binary)
        self.version = _cli_version(binary)
        self._env = env
        self.timeout = timeout

    def run(
        self,
        args: list[str],
        cwd: str,
        additional_env: Mapping[str, str],
        on_output: auto.OnOutput | None = None,
        on_error: auto.OnOutput | None = None,
    ) -> auto.CommandResult:
        """Run `pulumi <args>`; stdout lines go to `on_output` unless they may hold secrets
        (anything run with --show-secrets), which are neither streamed nor put into errors.
        stderr is kept for the error message, not streamed (`on_error` is never called)."""
        sensitive = "--show-secrets" in args
        cmd = [self.command, "--non-interactive", "--color", "never", *args]
        env = {**self._env(), **additional_env, "PULUMI_AUTOMATION_API": "true"}
        proc = subprocess.Popen(  # noqa: S603 - our own binary, argument list, no shell
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        err_chunks: list[str] = []
        out_lines: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        err_stream = proc.stderr
        drain = threading.Thread(target=lambda: err_chunks.append(err_stream.read()), daemon=True)
        drain.start()
        timer = threading.Timer(self.timeout, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                out_lines.append(line)
                if on_output is not None and not sensitive and _shown(line):
                    on_output(line.rstrip("\n"))
            proc.wait()
        except BaseException:
            # Ctrl-C reached the engine too (same process group) and it is cancelling: give
            # it time to release the stack's lock, then make sure it is gone.
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        finally:
            timer.cancel()
            drain.join(timeout=10)
        stdout, stderr = "".join(out_lines), "".join(err_chunks)
        if proc.returncode != 0:
            raise command_error(args, proc.returncode, stdout, stderr, sensitive)
        return auto.CommandResult(stdout=stdout, stderr=stderr, code=proc.returncode)


@dataclass
class Engine:
    """Drives the Pulumi engine for one project directory and one backend.

    `isolated=True` (the sandbox and tests): a file backend in `state_dir`, the engine's home
    under .tools/, the passphrase from `PULUMI_CONFIG_PASSPHRASE` or the sandbox default.
    `isolated=False` (verify of a real stack): the user's own backend, login and secrets
    provider, untouched. Reads never select a stack (that would change the user's current
    one); preview/up/refresh/destroy do, as `pulumi` does.
    """

    project_dir: Path = REPO_ROOT
    state_dir: Path | None = None
    passphrase: str | None = None
    isolated: bool = True
    on_line: LineSink | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.binary = find_engine()
        if self.isolated and self.state_dir is None:
            self.state_dir = DEFAULT_STATE_DIR
        self.cli = _Cli(self.binary, self.env)
        self.workspace = auto.LocalWorkspace(
            work_dir=str(self.project_dir),
            pulumi_home=str(ENGINE_HOME) if self.isolated else None,
            secrets_provider="passphrase" if self.isolated else None,
            pulumi_command=self.cli,
        )
        self._stacks: dict[str, auto.Stack] = {}

    # -- environment ---------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The whole environment of every engine process (read at each run)."""
        env = dict(os.environ)
        tools = str(self.binary.parent)
        env["PATH"] = tools + os.pathsep + env.get("PATH", "")
        env["PULUMI_SKIP_UPDATE_CHECK"] = "true"
        env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "true"
        # The engine's own colour and progress codes would garble streamed lines.
        env["NO_COLOR"] = "1"
        # Unlocks `--event-log`, through which the Automation API receives the engine's events.
        env["PULUMI_DEBUG_COMMANDS"] = "true"
        if self.isolated:
            assert self.state_dir is not None
            self.state_dir.mkdir(parents=True, exist_ok=True)
            ENGINE_HOME.mkdir(parents=True, exist_ok=True)
            env["PULUMI_BACKEND_URL"] = "file://" + str(self.state_dir.resolve())
            env["PULUMI_HOME"] = str(ENGINE_HOME)
            env["PULUMI_CONFIG_PASSPHRASE"] = self.passphrase or os.environ.get(
                PASSPHRASE_ENV, SANDBOX_PASSPHRASE
            )
            env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
            env.pop("PULUMI_ACCESS_TOKEN", None)
        env.update(self.extra_env)
        return env

    def command(self, args: Sequence[str]) -> auto.CommandResult:
        """A CLI command the Automation API has no verb for (module docstring)."""
        return self.cli.run(list(args), str(self.project_dir), {})

    # -- stacks --------------------------------------------------------------------------
    def stack_exists(self, stack: str) -> bool:
        names = {summary.name.split("/")[-1] for summary in self.workspace.list_stacks()}
        return stack in names

    def ensure_stack(self, stack: str) -> None:
        """Create the stack in the backend if it isn't there (idempotent).

        With a committed `Pulumi.<stack>.yaml` that has an `encryptionsalt`, `stack init`
        reuses that salt (and checks the passphrase against it) and leaves the file as is.
        """
        if not self.stack_exists(stack):
            self.workspace.create_stack(stack)

    def _stack(self, stack: str) -> auto.Stack:
        if stack not in self._stacks:
            self._stacks[stack] = auto.Stack.select(stack, self.workspace)
        return self._stacks[stack]

    @contextlib.contextmanager
    def config_copy(
        self, stack: str, overrides: Mapping[str, Any] | None = None
    ) -> Iterator[Path]:
        """A temporary copy of the stack file with plain-text `overrides` applied (values as
        the typed `config:` block of Pulumi.yaml wants them: lists as lists).

        Keys without a namespace get `userflow-segment:`. The copy lives in a private temp
        directory removed afterwards; the committed file is only read.
        """
        source = stack_file(stack, self.project_dir)
        data: dict[str, Any] = {}
        if source.exists():
            data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
        config = dict(data.get("config") or {})
        for key, value in (overrides or {}).items():
            full = key if ":" in key else f"{CONFIG_NAMESPACE}:{key}"
            config[full] = value
        data["config"] = config
        with tempfile.TemporaryDirectory(prefix="pulumi-config-") as tmp:
            copy = Path(tmp) / source.name
            copy.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
            yield copy

    def _operation(self, op: str, stack: str, config_file: Path | None) -> RunResult:
        events: list[auto.EngineEvent] = []
        options: dict[str, Any] = {
            "on_output": self.on_line, "on_event": events.append,
            "config_file": str(config_file) if config_file is not None else None}
        if op != "preview":
            # The result's summary would otherwise carry the stack's config decrypted.
            options["show_secrets"] = False
        result = getattr(self._stack(stack), op)(**options)
        args = (op, "--stack", stack)
        return RunResult(args, summarize(events), result.stdout, result.stderr)

    def preview(self, stack: str, config_file: Path | None = None) -> RunResult:
        return self._operation("preview", stack, config_file)

    def up(self, stack: str, config_file: Path | None = None) -> RunResult:
        return self._operation("up", stack, config_file)

    def refresh(self, stack: str, config_file: Path | None = None) -> RunResult:
        return self._operation("refresh", stack, config_file)

    def destroy(self, stack: str, config_file: Path | None = None) -> RunResult:
        return self._operation("destroy", stack, config_file)

    def forget_resources(self, stack: str) -> None:
        """Drop every resource from the stack's state without touching what it describes
        (`pulumi state delete --all`): for the sandbox, whose emulators keep nothing once
        their process is gone."""
        self.command(["state", "delete", "--all", "--yes", "--stack", stack])

    # -- reading state -------------------------------------------------------------------
    def outputs(self, stack: str, *, show_secrets: bool = False) -> dict[str, Any]:
        """The stack's outputs; a secret one reads `[secret]` unless `show_secrets`."""
        outputs = self.workspace.stack_outputs(stack)
        return {key: out.value if show_secrets or not out.secret else SECRET_MASK
                for key, out in outputs.items()}

    def export(self, stack: str, *, show_secrets: bool = False) -> dict[str, Any]:
        """The stack's deployment; with `show_secrets` the values are decrypted in memory,
        without it every secret reads `[secret]`."""
        exported = self.workspace.export_stack(stack)  # always decrypted by the engine
        deployment = {"version": exported.version, "deployment": exported.deployment}
        shown: dict[str, Any] = (unwrap_secrets(deployment) if show_secrets
                                 else mask_secrets(deployment))
        return shown

    def config(
        self, stack: str, config_file: Path | None = None, *, show_secrets: bool = False
    ) -> dict[str, Any]:
        """Stack config as `{key: value}`; a secret is `None` unless `show_secrets` (then it is
        decrypted in memory). `pulumi config` itself, not the Automation API's
        `get_all_config`, which always decrypts and cannot read a `--config-file` copy."""
        args = ["config", "--stack", stack, "--json"]
        if show_secrets:
            args.append("--show-secrets")
        if config_file is not None:
            args += ["--config-file", str(config_file)]
        raw: dict[str, Any] = json.loads(self.command(args).stdout or "{}")
        return {key: entry.get("value") for key, entry in raw.items()}

    def state_file(self, stack: str) -> Path:
        """The file backend's JSON for the stack (isolated engines only)."""
        assert self.state_dir is not None, "only an isolated engine has a state dir"
        project = yaml.safe_load((self.project_dir / "Pulumi.yaml").read_text(encoding="utf-8"))
        name = str(project.get("name", PROJECT_NAME))
        return self.state_dir / ".pulumi" / "stacks" / name / f"{stack}.json"


def _shown(line: str) -> bool:
    """Worth streaming: not blank, not the non-interactive spinner (`@ updating....`)."""
    text = line.strip()
    return bool(text) and not text.startswith("@ ")


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@functools.cache
def _cli_version(binary: Path) -> VersionInfo:
    """The CLI's version, which the Automation API checks features against."""
    done = subprocess.run(  # noqa: S603 - our own binary, argument list, no shell
        [str(binary), "version"], capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"},
    )
    text = done.stdout.strip().removeprefix("v")
    try:
        return VersionInfo.parse(text)
    except ValueError:
        raise EngineError(
            f"`{binary} version` printed {text!r}, not a version: a CLI built without its "
            "version stamp (scripts/ensure-engine.sh sets it) cannot be driven"
        ) from None


def command_error(
    args: Sequence[str], code: int, stdout: str, stderr: str, sensitive: bool
) -> EngineError:
    """The error for a failed command: its stderr, and its stdout unless it may hold secrets
    (the engine reports most failures, its diagnostics, on stdout)."""
    detail = stderr.strip()
    if not sensitive:
        detail = "\n".join(filter(None, [_tail(stdout, 40), detail]))
    message = f"`pulumi {' '.join(args)}` failed (exit {code}):\n{detail}"
    for pattern, trouble in _SECRETS_TROUBLE:
        if pattern.search(stderr):
            return SecretsUnavailable(message, trouble)
    return EngineError(message)
