"""The engine runner's pure parts and its environment: no engine run needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops import engine as engine_module
from ops.engine import (
    ChangeSummary,
    Engine,
    EngineError,
    EngineMissing,
    find_engine,
    parse_event_log,
    resource_outputs,
    unwrap_secrets,
)


def test_missing_engine_says_to_run_make_setup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(engine_module, "TOOLS_DIR", tmp_path / "nothing-here")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineMissing, match="make setup"):
        find_engine()


def test_event_log_summary_is_the_last_summary_event() -> None:
    log = "\n".join([
        json.dumps({"sequence": 1, "preludeEvent": {"config": {}}}),
        json.dumps({"sequence": 2, "summaryEvent": {"resourceChanges": {"create": 4}}}),
        '{"sequence": 3, "torn',
    ])
    summary = parse_event_log(log)
    assert summary.count("create") == 4
    assert summary.changes == 4
    with pytest.raises(EngineError, match="no summary"):
        parse_event_log(json.dumps({"sequence": 1, "cancelEvent": {}}))


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
