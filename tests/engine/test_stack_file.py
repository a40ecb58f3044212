"""The committed sandbox stack file decrypts on a fresh backend with the documented passphrase."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from ops.engine import CONFIG_NAMESPACE, SANDBOX_PASSPHRASE, Engine, EngineError, stack_file

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
