"""Our Python language host (scripts/pulumi_language_python.py) speaks Pulumi's protocol.

The real engine drives it in tests/engine and tests/e2e; here it is started alone, the way the
engine starts a plugin, and asked over gRPC what the engine asks first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import language_pb2, language_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
HOST = ROOT / "scripts" / "pulumi_language_python.py"
EXEC_SHIM = ROOT / ".tools" / "pulumi" / "pulumi-language-python-exec"


@pytest.fixture
def host() -> Iterator[language_pb2_grpc.LanguageRuntimeStub]:
    # GIVEN the host started with an engine address, as the engine starts plugins (the
    # wrapper setup installs points it at Pulumi's exec shim the same way)
    assert EXEC_SHIM.exists(), "the engine is missing: run `make setup`"
    env = {**os.environ, "PULUMI_LANGUAGE_PYTHON_EXEC": str(EXEC_SHIM)}
    proc = subprocess.Popen([sys.executable, str(HOST), "127.0.0.1:1"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().strip())  # the plugin protocol: port on line 1
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield language_pb2_grpc.LanguageRuntimeStub(channel)
        channel.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0  # SIGTERM is a normal stop, not a crash


def test_reports_the_sdk_release_as_its_version(
    host: language_pb2_grpc.LanguageRuntimeStub,
) -> None:
    info = host.GetPluginInfo(empty_pb2.Empty(), timeout=10)
    assert info.version == version("pulumi")


def test_a_missing_virtualenv_is_a_clear_error_not_a_crash(
    host: language_pb2_grpc.LanguageRuntimeStub, tmp_path: Path
) -> None:
    # GIVEN a program whose Pulumi.yaml names a virtualenv that does not exist
    options = struct_pb2.Struct()
    options.update({"virtualenv": "no-such-venv"})
    request = language_pb2.RunRequest(
        project="p", stack="s", pwd=str(tmp_path),
        info=language_pb2.ProgramInfo(root_directory=str(tmp_path),
                                      program_directory=str(tmp_path), entry_point=".",
                                      options=options))
    # WHEN the engine asks it to run the program
    response = host.Run(request, timeout=10)
    # THEN it answers with an error that says what to do
    assert "no-such-venv" in response.error and "make setup" in response.error


def test_a_failing_program_is_reported_with_its_exit_code(
    host: language_pb2_grpc.LanguageRuntimeStub, tmp_path: Path
) -> None:
    # GIVEN a program run through Pulumi's exec shim with no engine listening (the shim
    # fails while connecting to the resource monitor, before the program runs)
    (tmp_path / "__main__.py").write_text("raise SystemExit(3)\n")
    venv_bin = Path(sys.executable).parent
    options = struct_pb2.Struct()
    options.update({"virtualenv": str(venv_bin.parent)})
    request = language_pb2.RunRequest(
        project="p", stack="s", pwd=str(tmp_path), monitor_address="127.0.0.1:1",
        info=language_pb2.ProgramInfo(root_directory=str(tmp_path),
                                      program_directory=str(tmp_path), entry_point=".",
                                      options=options))
    response = host.Run(request, timeout=60)
    # THEN the host answers with the exit code instead of failing the RPC
    assert response.error == "Program exited with non-zero exit code: 1"
    assert not response.bail


def test_a_missing_exec_shim_is_named(tmp_path: Path) -> None:
    # GIVEN the host started without Pulumi's exec shim beside it
    env = {**os.environ, "PULUMI_LANGUAGE_PYTHON_EXEC": str(tmp_path / "absent-exec")}
    proc = subprocess.Popen([sys.executable, str(HOST), "127.0.0.1:1"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().strip())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = language_pb2_grpc.LanguageRuntimeStub(channel)
            response = stub.Run(language_pb2.RunRequest(pwd=str(tmp_path)), timeout=10)
        # THEN the error names the missing file and the fix
        assert "absent-exec" in response.error and "make setup" in response.error
    finally:
        proc.terminate()
        proc.wait(timeout=10)
