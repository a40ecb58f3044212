"""The committed stack files: the sandbox's decrypts with the documented passphrase, and a
newcomer's first engine commands validate them and rewrite nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ops.engine import CONFIG_NAMESPACE, SANDBOX_PASSPHRASE, Engine, EngineError, stack_file

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.engine

LOCAL = stack_file("local")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_committed_file_keeps_credentials_encrypted() -> None:
    # GIVEN the committed file WHEN read as text THEN no sandbox credential is in plaintext
    text = LOCAL.read_text(encoding="utf-8")
    assert "sandbox-segment-token" not in text
    assert "ak_sandbox_local" not in text
    config = yaml.safe_load(text)["config"]
    for key in ("segmentToken", "userflowApiKey"):
        assert set(config[f"{CONFIG_NAMESPACE}:{key}"]) == {"secure"}


def test_fresh_backend_decrypts_with_sandbox_passphrase(fresh_engine: Engine) -> None:
    # GIVEN a backend that has never seen the stack (a fresh clone)
    before = _digest(LOCAL)
    fresh_engine.passphrase = SANDBOX_PASSPHRASE
    # WHEN the stack is initialised and its config read with the documented passphrase
    fresh_engine.ensure_stack("local")
    fresh_engine.ensure_stack("local")  # idempotent
    with fresh_engine.config_copy("local") as copy:
        config = fresh_engine.config("local", copy, show_secrets=True)
    # THEN the sandbox credentials come back and the committed file is byte-for-byte unchanged
    assert config[f"{CONFIG_NAMESPACE}:segmentToken"] == "sandbox-segment-token"
    assert config[f"{CONFIG_NAMESPACE}:userflowApiKey"] == "ak_sandbox_local"
    assert config[f"{CONFIG_NAMESPACE}:environment"] == "local"
    assert config[f"{CONFIG_NAMESPACE}:hosting"] == "local"
    assert _digest(LOCAL) == before


def test_wrong_passphrase_is_refused(fresh_engine: Engine) -> None:
    # GIVEN the wrong passphrase WHEN the stack is initialised THEN the engine refuses it
    fresh_engine.passphrase = "not-the-sandbox-passphrase"
    with pytest.raises(EngineError, match="passphrase"):
        fresh_engine.ensure_stack("local")


# -- the committed stack files are in the form Pulumi writes -------------------------------------

SALT_LINE = "encryptionsalt: "


def _pulumi(binary: Path, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real engine on a private file backend and home (a fresh clone's first commands)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PULUMI_BACKEND_URL": "file://" + str(project / ".state"),
        "PULUMI_HOME": str(project / ".home"),
        "PULUMI_CONFIG_PASSPHRASE": SANDBOX_PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "NO_COLOR": "1",
    }
    return subprocess.run(  # our own binary, an argument list, no shell
        [str(binary), "--non-interactive", *args], cwd=project, env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )


def _project_copy(tmp_path: Path, *stacks: str) -> Path:
    """Pulumi.yaml and the stack files, copied byte for byte (the engine needs no program for
    stack and config commands, and the committed files are never touched)."""
    (tmp_path / ".state").mkdir()
    for name in ("Pulumi.yaml", *(f"Pulumi.{stack}.yaml" for stack in stacks)):
        shutil.copyfile(REPO_ROOT / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("stack", ["local", "staging", "production"])
def test_a_fresh_stack_select_and_config_get_rewrite_nothing(
    engine_binary: Path, tmp_path: Path, stack: str
) -> None:
    # GIVEN a fresh backend and the committed Pulumi.<stack>.yaml
    project = _project_copy(tmp_path, stack)
    committed = (REPO_ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8")
    # WHEN a newcomer selects the stack and reads its config
    for args in (["stack", "select", "--create", stack], ["config", "get", "environment"],
                 ["config", "--json"]):
        result = _pulumi(engine_binary, project, *args)
        assert result.returncode == 0, result.stdout + result.stderr
    # THEN the engine validated every typed key and rewrote no value: the sandbox file, which
    # carries its salt, is byte-identical; the AWS stacks only gain the secrets provider's salt
    # line (each team's own passphrase, so it can't be committed for them)
    after = (project / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8")
    if SALT_LINE in committed:
        assert after == committed
    else:
        added = after.removeprefix(committed)
        assert after.startswith(committed) and added.startswith(SALT_LINE), after
        assert added.count("\n") == 1


def test_a_stack_missing_every_required_key_hears_of_all_at_once(
    engine_binary: Path, tmp_path: Path
) -> None:
    # GIVEN a new stack with no config at all
    project = _project_copy(tmp_path)
    assert _pulumi(engine_binary, project, "stack", "init", "qa").returncode == 0
    # WHEN previewed THEN the engine names every required key in one line, before any program
    result = _pulumi(engine_binary, project, "preview", "--stack", "qa")
    assert result.returncode != 0
    assert ("Stack 'qa' is missing configuration values 'environment', 'segmentToken' and "
            "'userflowApiKey'") in result.stdout + result.stderr


def test_stack_rm_with_preserve_config_keeps_the_stack_file(
    engine_binary: Path, tmp_path: Path
) -> None:
    # GIVEN a stack that `destroy` has emptied (a fresh one holds no resources either)
    project = _project_copy(tmp_path, "staging")
    committed = (project / "Pulumi.staging.yaml").read_text(encoding="utf-8")
    assert _pulumi(engine_binary, project, "stack", "select", "--create", "staging").returncode == 0
    # WHEN it is removed from the backend as docs/operations.md's uninstall runbook says
    result = _pulumi(engine_binary, project, "stack", "rm", "--preserve-config", "--yes",
                     "staging")
    # THEN the backend no longer lists it, and the stack file is still there
    assert result.returncode == 0, result.stdout + result.stderr
    listed = _pulumi(engine_binary, project, "stack", "ls", "--json")
    assert listed.returncode == 0 and "staging" not in listed.stdout
    assert (project / "Pulumi.staging.yaml").read_text(encoding="utf-8").startswith(committed)
