"""A Pulumi language host for Python programs, for machines that cannot fetch Pulumi's own.

The Go module proxy serves the Pulumi CLI (pkg/v3, sdk/v3) but not the module of the Python
language host (sdk/python/cmd/pulumi-language-python/v3): every version, pseudo-version and
commit of it is refused. This host speaks the same LanguageRuntime gRPC protocol using the
stubs the Pulumi Python SDK itself ships, and runs programs exactly as Pulumi's host does:
`<virtualenv>/bin/python -u pulumi-language-python-exec --monitor … <program>`, with the stack
config in PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS.

scripts/ensure-engine.sh installs it as `.tools/pulumi/pulumi-language-python` (a wrapper that
runs this file with the project's virtualenv) only when the Go build of the real host fails.
It implements what `preview`, `up`, `refresh`, `destroy` and `about` need; plugin discovery
returns nothing, because offline there are no plugins to download anyway.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

# Pulumi's exec shim (from the pulumi/sdk module's python/ folder, installed by
# scripts/ensure-engine.sh) sits next to this host; its exit code 32 means "already explained".
EXEC_SHIM = "pulumi-language-python-exec"
USER_ACTIONABLE_EXIT = 32


def engine_version() -> str:
    # The SDK and the CLI are pinned to one release; report it as the plugin's version.
    from importlib.metadata import version

    return version("pulumi")


def runtime_options(info: Any) -> dict[str, Any]:
    if info is None or not info.HasField("options"):
        return {}
    options: dict[str, Any] = json_format.MessageToDict(info.options)
    return options


def python_for(root: Path, options: dict[str, Any]) -> str:
    """The interpreter Pulumi would use: the project's virtualenv if one is configured."""
    venv = options.get("virtualenv")
    if venv:
        path = Path(venv) if Path(venv).is_absolute() else root / venv
        candidate = path / "bin" / "python"
        if not candidate.exists():
            raise RuntimeError(
                f"the 'virtualenv' option in Pulumi.yaml is {venv!r} but {candidate} does not "
                "exist: run `make setup`"
            )
        return str(candidate)
    return os.environ.get("PULUMI_PYTHON_CMD", sys.executable)


class PythonLanguageHost(language_pb2_grpc.LanguageRuntimeServicer):
    def __init__(self, engine_address: str, exec_shim: Path) -> None:
        self.engine_address = engine_address
        self.exec_shim = exec_shim

    def Handshake(self, request: Any, context: Any) -> Any:
        if request.engine_address:
            self.engine_address = request.engine_address
        return language_pb2.LanguageHandshakeResponse()

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return plugin_pb2.PluginInfo(version=engine_version())

    def GetRequiredPlugins(self, request: Any, context: Any) -> Any:
        return language_pb2.GetRequiredPluginsResponse()

    def GetRequiredPackages(self, request: Any, context: Any) -> Any:
        return language_pb2.GetRequiredPackagesResponse()

    def GetProgramDependencies(self, request: Any, context: Any) -> Any:
        return language_pb2.GetProgramDependenciesResponse()

    def About(self, request: Any, context: Any) -> Any:
        return language_pb2.AboutResponse(executable=sys.executable,
                                          version=sys.version.split()[0])

    def InstallDependencies(self, request: Any, context: Any) -> Any:
        # `make setup` owns the virtualenv; nothing to stream back.
        return iter(())

    def Run(self, request: Any, context: Any) -> Any:
        info = request.info if request.HasField("info") else None
        root = Path(info.root_directory if info and info.root_directory else request.pwd or ".")
        if not self.exec_shim.is_file():
            return language_pb2.RunResponse(
                error=f"{self.exec_shim} is missing: run `make setup` (scripts/ensure-engine.sh "
                "puts Pulumi's exec shim next to the language host)")
        try:
            python = python_for(root, runtime_options(info))
        except RuntimeError as err:
            return language_pb2.RunResponse(error=str(err))

        args = [python, "-u", str(self.exec_shim)]
        for flag, value in (
            ("monitor", request.monitor_address),
            ("engine", self.engine_address),
            ("project", request.project),
            ("stack", request.stack),
            ("pwd", request.pwd),
            ("dry_run", "true" if request.dryRun else "false"),
            ("parallel", str(request.parallel)),  # the shim needs it, as Pulumi's host sends it
            ("organization", request.organization),
            ("root_directory", str(root) if info and info.root_directory else ""),
        ):
            if value:
                args += [f"--{flag}", value]
        program = (info.entry_point if info and info.entry_point else request.program) or "."
        args.append(program)
        args.extend(request.args)

        env = dict(os.environ)
        env["PULUMI_CONFIG"] = json.dumps(dict(request.config))
        env["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(request.configSecretKeys))
        cwd = request.pwd or str(root)
        # Output goes straight to our stdout/stderr, which the engine shows as the program's.
        proc = subprocess.run(args, cwd=cwd, env=env, check=False)  # noqa: S603
        if proc.returncode == 0:
            return language_pb2.RunResponse()
        if proc.returncode == USER_ACTIONABLE_EXIT:
            return language_pb2.RunResponse(bail=True)
        return language_pb2.RunResponse(
            error=f"Program exited with non-zero exit code: {proc.returncode}")

    def Cancel(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()


def main(argv: list[str]) -> int:
    # The engine passes flags (-tracing, -root, …) and then its own address; keep the address.
    positional = [a for a in argv if not a.startswith("-")]
    engine_address = positional[0] if positional else ""
    shim = Path(os.environ.get("PULUMI_LANGUAGE_PYTHON_EXEC",
                               Path(sys.argv[0]).resolve().parent / EXEC_SHIM))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)])
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(
        PythonLanguageHost(engine_address, shim), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    # The engine reads the port from our first line of stdout (the plugin protocol).
    print(port, flush=True)
    # The engine stops plugins with SIGINT or SIGTERM when it is done with them: a normal exit.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop(0))
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
