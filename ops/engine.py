"""The one place that runs the Pulumi CLI for the sandbox, `verify` and the engine tests.

Every run is offline and self-contained: a file backend (the repo's `.pulumi-state/` or a
directory the caller gives), a passphrase secrets provider, the engine's home under
`.tools/pulumi-home` (so nothing touches the user's `~/.pulumi`), no update checks and no
plugin downloads. Stack operations read a temporary copy of the stack file
(`--config-file`), so a run never rewrites the committed `Pulumi.<stack>.yaml`.

Secrets: commands that reveal them (`stack export --show-secrets`, `stack output
--show-secrets`, `config --show-secrets`) are never streamed, and their output never goes
into an exception message.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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

LineSink = Callable[[str], None]


class EngineError(RuntimeError):
    """The Pulumi CLI is missing or a command failed (the message carries its stderr)."""


class EngineMissing(EngineError):
    """No Pulumi CLI: `make setup` builds one into .tools/pulumi."""


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


def parse_event_log(text: str) -> ChangeSummary:
    """The `summaryEvent` of an engine event log (one JSON object per line)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line after a crash: the summary is elsewhere or missing
        summary = event.get("summaryEvent") if isinstance(event, dict) else None
        if isinstance(summary, dict):
            changes = summary.get("resourceChanges") or {}
            return ChangeSummary({str(k): int(v) for k, v in changes.items()})
    raise EngineError("the engine's event log has no summary event (did the run finish?)")


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


@dataclass
class Engine:
    """Runs the Pulumi CLI for one project directory and one backend.

    `isolated=True` (the sandbox and tests): a file backend in `state_dir`, the engine's home
    under .tools/, the passphrase from `PULUMI_CONFIG_PASSPHRASE` or the sandbox default.
    `isolated=False` (verify of a real stack): the user's own backend, login and secrets
    provider, untouched.
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

    # -- environment ---------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        tools = str(self.binary.parent)
        env["PATH"] = tools + os.pathsep + env.get("PATH", "")
        env["PULUMI_SKIP_UPDATE_CHECK"] = "true"
        env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "true"
        # The engine's own colour and progress codes would garble streamed lines.
        env["NO_COLOR"] = "1"
        # Unlocks `--event-log` (how the Automation API reads summaries, too).
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

    # -- low level -----------------------------------------------------------------------
    def run(
        self,
        args: Sequence[str],
        *,
        stream: bool = False,
        sensitive: bool = False,
        check: bool = True,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run `pulumi <args>`; stream stdout lines to `on_line` when asked.

        `sensitive` output (anything run with --show-secrets) is neither streamed nor put
        into the error message.
        """
        cmd = [str(self.binary), "--non-interactive", "--color", "never", *args]
        proc = subprocess.Popen(  # noqa: S603 - our own binary, argument list, no shell
            cmd,
            cwd=self.project_dir,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        err_chunks: list[str] = []
        out_lines: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        err_stream = proc.stderr
        drain = threading.Thread(target=lambda: err_chunks.append(err_stream.read()), daemon=True)
        drain.start()
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                out_lines.append(line)
                if stream and not sensitive and self.on_line is not None and _shown(line):
                    self.on_line(line.rstrip("\n"))
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
        if check and proc.returncode != 0:
            shown = "pulumi " + " ".join(args)
            detail = stderr.strip()
            if not sensitive:
                # The engine reports most failures (diagnostics) on stdout.
                detail = "\n".join(filter(None, [_tail(stdout, 40), detail]))
            raise EngineError(f"`{shown}` failed (exit {proc.returncode}):\n{detail}")
        return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)

    # -- stacks --------------------------------------------------------------------------
    def stack_exists(self, stack: str) -> bool:
        listing = json.loads(self.run(["stack", "ls", "--json"]).stdout or "[]")
        names = {str(s.get("name", "")).split("/")[-1] for s in listing}
        return stack in names

    def ensure_stack(self, stack: str) -> None:
        """Create the stack in the backend if it isn't there (idempotent).

        With a committed `Pulumi.<stack>.yaml` that has an `encryptionsalt`, `stack init`
        reuses that salt (and checks the passphrase against it) and leaves the file as is.
        """
        if self.stack_exists(stack):
            return
        args = ["stack", "init", stack, "--no-select"]
        if self.isolated:
            args += ["--secrets-provider", "passphrase"]
        self.run(args, stream=True)

    @contextlib.contextmanager
    def config_copy(
        self, stack: str, overrides: Mapping[str, str] | None = None
    ) -> Iterator[Path]:
        """A temporary copy of the stack file with plain-text `overrides` applied.

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

    def _operation(
        self, op: str, stack: str, config_file: Path | None, extra: Sequence[str]
    ) -> RunResult:
        with tempfile.TemporaryDirectory(prefix="pulumi-events-") as tmp:
            log = Path(tmp) / "events.jsonl"
            args = [op, "--stack", stack, "--event-log", str(log), *extra]
            if config_file is not None:
                args += ["--config-file", str(config_file)]
            done = self.run(args, stream=True)
            summary = parse_event_log(log.read_text(encoding="utf-8"))
        return RunResult(tuple(done.args), summary, done.stdout, done.stderr)

    def preview(self, stack: str, config_file: Path | None = None) -> RunResult:
        return self._operation("preview", stack, config_file, [])

    def up(self, stack: str, config_file: Path | None = None) -> RunResult:
        return self._operation("up", stack, config_file, ["--yes", "--skip-preview"])

    def refresh(self, stack: str, config_file: Path | None = None) -> RunResult:
        return self._operation("refresh", stack, config_file, ["--yes", "--skip-preview"])

    def destroy(self, stack: str, config_file: Path | None = None) -> RunResult:
        return self._operation("destroy", stack, config_file, ["--yes", "--skip-preview"])

    def forget_resources(self, stack: str) -> None:
        """Drop every resource from the stack's state without touching what it describes
        (`pulumi state delete --all`): for the sandbox, whose emulators keep nothing once
        their process is gone."""
        self.run(["state", "delete", "--all", "--yes", "--stack", stack], stream=True)

    # -- reading state -------------------------------------------------------------------
    def outputs(self, stack: str, *, show_secrets: bool = False) -> dict[str, Any]:
        args = ["stack", "output", "--stack", stack, "--json"]
        if show_secrets:
            args.append("--show-secrets")
        done = self.run(args, sensitive=show_secrets)
        result: dict[str, Any] = json.loads(done.stdout or "{}")
        return result

    def export(self, stack: str, *, show_secrets: bool = False) -> dict[str, Any]:
        """The stack's deployment; with `show_secrets` the values are decrypted in memory."""
        args = ["stack", "export", "--stack", stack]
        if show_secrets:
            args.append("--show-secrets")
        done = self.run(args, sensitive=show_secrets)
        exported: dict[str, Any] = json.loads(done.stdout)
        return unwrap_secrets(exported) if show_secrets else exported

    def config(
        self, stack: str, config_file: Path | None = None, *, show_secrets: bool = False
    ) -> dict[str, Any]:
        """Stack config as `{key: value}` (secrets shown only when asked, in memory)."""
        args = ["config", "--stack", stack, "--json"]
        if show_secrets:
            args.append("--show-secrets")
        if config_file is not None:
            args += ["--config-file", str(config_file)]
        done = self.run(args, sensitive=show_secrets)
        raw: dict[str, Any] = json.loads(done.stdout or "{}")
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
