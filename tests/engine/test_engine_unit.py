"""The engine runner's pure parts and its environment: no engine run needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pulumi import automation as auto

from ops import engine as engine_module
from ops.engine import (
    ChangeSummary,
    Engine,
    EngineError,
    EngineMissing,
    SecretsUnavailable,
    command_error,
    find_engine,
    mask_secrets,
    resource_outputs,
    summarize,
    unwrap_secrets,
)


def test_missing_engine_says_to_run_make_setup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(engine_module, "TOOLS_DIR", tmp_path / "nothing-here")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineMissing, match="make setup"):
        find_engine()


def test_summary_is_the_last_summary_event() -> None:
    # The events as the engine streams them to the Automation API's `on_event`.
    events = [auto.EngineEvent.from_json(e) for e in (
        {"sequence": 1, "preludeEvent": {"config": {}}},
        {"sequence": 2, "summaryEvent": {"resourceChanges": {"create": 9}}},
        {"sequence": 3, "summaryEvent": {"resourceChanges": {"create": 4}}},
        {"sequence": 4, "cancelEvent": {}},
    )]
    summary = summarize(events)
    assert summary.count("create") == 4
    assert summary.changes == 4
    # The SDK's own enum keys count the same as the wire's strings.
    typed = auto.EngineEvent(0, 0, summary_event=auto.SummaryEvent(
        False, 0, {auto.OpType.DELETE: 2}, {}))
    assert str(summarize([typed])) == "delete 2"
    with pytest.raises(EngineError, match="no summary"):
        summarize([auto.EngineEvent.from_json({"sequence": 1, "cancelEvent": {}})])


def test_change_summary_counts_everything_but_same() -> None:
    summary = ChangeSummary({"same": 5, "update": 1, "delete": 2})
    assert summary.changes == 3
    assert summary.count("create") == 0
    assert str(summary) == "delete 2, same 5, update 1"
    assert str(ChangeSummary({})) == "nothing"


def test_secrets_are_unwrapped_from_an_export() -> None:
    sig = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}
    exported = {"deployment": {"resources": [
        {"type": "pulumi-python:dynamic/segment:Source",
         "outputs": {"slug": "userflow-local",
                     "write_key": {**sig, "plaintext": json.dumps("wk_123")}}},
        {"type": "pulumi:pulumi:Stack", "outputs": {}},
    ]}}
    plain = unwrap_secrets(exported)
    assert resource_outputs(plain, "segment:Source") == [
        {"slug": "userflow-local", "write_key": "wk_123"}]
    with pytest.raises(EngineError, match="still encrypted"):
        unwrap_secrets({**sig, "ciphertext": "v1:abc"})
    # Not asked to show secrets: every envelope reads as the CLI's mask, the rest stays.
    masked = mask_secrets(exported)
    assert resource_outputs(masked, "segment:Source") == [
        {"slug": "userflow-local", "write_key": "[secret]"}]
    assert "wk_123" not in json.dumps(masked)


def test_a_failed_command_says_why_and_never_shows_revealed_output() -> None:
    # GIVEN a --show-secrets command failing for want of the passphrase
    missing = command_error(
        ["config", "--show-secrets"], 1, stdout='{"k": {"value": "s3cr3t"}}',
        stderr="error: passphrase must be set with PULUMI_CONFIG_PASSPHRASE or "
               "PULUMI_CONFIG_PASSPHRASE_FILE environment variables\n", sensitive=True)
    # THEN it is named as such, and what the command printed stays out of the message
    assert isinstance(missing, SecretsUnavailable) and missing.trouble == "no passphrase"
    assert "s3cr3t" not in str(missing) and "PULUMI_CONFIG_PASSPHRASE" in str(missing)
    wrong = command_error(["config"], 1, "", "error: incorrect passphrase\n", False)
    assert isinstance(wrong, SecretsUnavailable) and wrong.trouble == "wrong passphrase"
    # GIVEN a cloud secrets provider that refuses THEN it is a secrets problem, not a passphrase
    kms = command_error(["stack", "output"], 255, "",
                        "error: could not create a decrypter: AccessDeniedException", False)
    assert isinstance(kms, SecretsUnavailable) and kms.trouble == "secrets provider"
    # GIVEN any other failure THEN a plain engine error with the diagnostics from stdout
    other = command_error(["up"], 1, "error: a diagnostic line", "error: update failed", False)
    assert type(other) is EngineError
    assert "a diagnostic line" in str(other) and "update failed" in str(other)


def test_isolated_environment_touches_nothing_of_the_user(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", "/somewhere/else")
    monkeypatch.setenv("PULUMI_ACCESS_TOKEN", "pul-user-token")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    env = Engine(state_dir=tmp_path / "state").env()
    assert env["PULUMI_BACKEND_URL"] == "file://" + str((tmp_path / "state").resolve())
    assert env["PULUMI_HOME"].endswith(".tools/pulumi-home")
    assert env["PULUMI_CONFIG_PASSPHRASE"] == "userflow-segment-sandbox"
    assert env["PULUMI_SKIP_UPDATE_CHECK"] == "true"
    assert env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    assert env["PATH"].split(":")[0] == str(find_engine().parent)
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" not in env
    assert "PULUMI_ACCESS_TOKEN" not in env
    # The documented override: the user's own passphrase variable wins.
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "rekeyed")
    assert Engine(state_dir=tmp_path / "state").env()["PULUMI_CONFIG_PASSPHRASE"] == "rekeyed"


def test_config_copy_overrides_plain_values_and_keeps_the_committed_file(
    tmp_path: Path, engine_binary: Path
) -> None:
    committed = (Path(engine_module.REPO_ROOT) / "Pulumi.local.yaml").read_bytes()
    runner = Engine(state_dir=tmp_path / "state")
    with runner.config_copy("local", {"bridgeUrl": "http://127.0.0.1:9"}) as copy:
        text = copy.read_text(encoding="utf-8")
        assert copy.parent != Path(engine_module.REPO_ROOT)
    assert "userflow-segment:bridgeUrl: http://127.0.0.1:9" in text
    assert "encryptionsalt:" in text and "secure:" in text
    assert not copy.exists()
    assert (Path(engine_module.REPO_ROOT) / "Pulumi.local.yaml").read_bytes() == committed
