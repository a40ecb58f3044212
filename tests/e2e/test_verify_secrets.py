"""`python -m ops verify` of a real stack whose secrets it cannot decrypt says so (the
passphrase is missing, or not the stack's) instead of Pulumi's error followed by "is the stack
deployed?". The stack lives in a file backend of its own, as a passphrase-protected staging
stack on a file or S3 backend does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from pulumi import automation as auto

from components.project import PROJECT
from ops import verify
from ops.engine import Engine

pytestmark = pytest.mark.e2e

STACK = "qa"
PASSPHRASE = "qa-stack-passphrase"


@dataclass
class RealStack:
    project_dir: Path
    env: dict[str, str]

    def reader(self) -> Engine:
        """verify's view: the user's own backend and secrets provider, nothing isolated."""
        return Engine(project_dir=self.project_dir, isolated=False, extra_env=self.env)


@pytest.fixture
def real_stack(engine_binary: Path, tmp_path: Path) -> RealStack:
    # GIVEN an AWS-hosted stack created with a passphrase and holding a secret
    project_dir = tmp_path / "project"
    project_dir.mkdir()
    (project_dir / "Pulumi.yaml").write_text(f"name: {PROJECT}\nruntime: python\n",
                                             encoding="utf-8")
    state = tmp_path / "state"
    owner = Engine(project_dir=project_dir, state_dir=state, passphrase=PASSPHRASE)
    owner.ensure_stack(STACK)
    owner.workspace.set_config(STACK, f"{PROJECT}:hosting", auto.ConfigValue("aws"))
    owner.workspace.set_config(STACK, f"{PROJECT}:userflowApiKey",
                               auto.ConfigValue("ak_qa_secret", secret=True))
    home = tmp_path / "home"
    home.mkdir()
    env = {"PULUMI_BACKEND_URL": "file://" + str(state), "PULUMI_HOME": str(home)}
    return RealStack(project_dir, env)


def test_verify_without_the_passphrase_says_it_is_missing(
    real_stack: RealStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # WHEN verify runs with neither passphrase variable set
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    lines: list[str] = []
    assert not verify.verify(STACK, engine=real_stack.reader(), out=lines.append)
    text = "\n".join(lines)
    # THEN it fails saying the passphrase is missing and how to give it, nothing else
    assert "FAIL  stack outputs and config: the stack's secrets need its passphrase" in text
    assert "set PULUMI_CONFIG_PASSPHRASE to the passphrase the stack was created with" in text
    assert "deployed" not in text
    assert "ak_qa_secret" not in text


def test_verify_with_another_passphrase_says_it_is_not_the_stacks(
    real_stack: RealStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # WHEN verify runs with some other stack's passphrase
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "not-the-qa-passphrase")
    lines: list[str] = []
    assert not verify.verify(STACK, engine=real_stack.reader(), out=lines.append)
    text = "\n".join(lines)
    # THEN it says that passphrase is not this stack's
    assert "is not this stack's passphrase" in text
    assert "deployed" not in text


def test_verify_with_the_passphrase_gets_past_the_secrets(
    real_stack: RealStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the right passphrase WHEN verify runs on the never-deployed stack
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
    lines: list[str] = []
    assert not verify.verify(STACK, engine=real_stack.reader(), out=lines.append)
    text = "\n".join(lines)
    # THEN the secrets are read and the failure is the next one: no bridge URL exported
    assert "passphrase" not in text
    assert "the stack exports no bridge URL" in text
    assert "ak_qa_secret" not in text
