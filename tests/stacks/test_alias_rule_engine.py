"""The real engine agrees with the alias rule the mocks tests apply (graph.alias_urns): a
component moved under a new parent with `MOVED_FROM_ROOT` keeps its URN's resources, its
children included, and URNs carry every ancestor's type (graph.qualified_type).

The AWS provider cannot run offline, so the probe program is a component with a dynamic
resource child (the Python dynamic provider ships with the engine), moved the way AwsBridge
moved the five parts. Without the CLI (`make setup` builds it) this fails, never skips."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.stacks.harness import ROOT

ENGINE = ROOT / ".tools" / "pulumi" / "pulumi"
TIMEOUT_SECONDS = 180
PROBE = '''
import os
import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider
from components.aws.bridge import MOVED_FROM_ROOT


class Echo(ResourceProvider):
    def create(self, props):
        return CreateResult(id_=props["n"], outs=props)


class Thing(Resource):
    def __init__(self, name, opts):
        super().__init__(Echo(), name, {"n": name}, opts)


class Part(pulumi.ComponentResource):
    def __init__(self, name, opts=None):
        super().__init__("probe:index:Part", name, None, opts)
        Thing(f"{name}-work", pulumi.ResourceOptions(parent=self))
        self.register_outputs({})


class Whole(pulumi.ComponentResource):
    def __init__(self, name):
        super().__init__("probe:index:Whole", name)
        Part("queue", pulumi.ResourceOptions(parent=self, aliases=[MOVED_FROM_ROOT]))
        self.register_outputs({})


if os.environ["PROBE_LAYOUT"] == "nested":
    Whole("bridge")
else:
    Part("queue")
'''


def pulumi(project: Path, layout: str, *args: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{ENGINE.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PULUMI_BACKEND_URL": f"file://{project.parent / 'state'}",
        "PULUMI_HOME": str(project.parent / "home"),
        "PULUMI_CONFIG_PASSPHRASE": "probe",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "NO_COLOR": "1",
        "PYTHONPATH": str(ROOT),
        "PROBE_LAYOUT": layout,
    }
    for variable in ("PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE_FILE"):
        env.pop(variable, None)
    done = subprocess.run([str(ENGINE), *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_SECONDS)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def state_urns(project: Path) -> set[str]:
    deployment: dict[str, Any] = json.loads(pulumi(project, "root", "stack", "export"))
    return {r["urn"].split("::", 2)[2] for r in deployment["deployment"]["resources"]
            if not r["type"].startswith(("pulumi:pulumi:", "pulumi:providers:"))}


def test_a_part_moved_under_a_new_parent_keeps_its_resources(tmp_path: Path) -> None:
    if not ENGINE.is_file():
        pytest.fail(f"no Pulumi CLI at {ENGINE}: run `make setup`", pytrace=False)
    project = tmp_path / "probe"
    for folder in ("probe", "state", "home"):
        (tmp_path / folder).mkdir()
    (project / "Pulumi.yaml").write_text(
        "name: aliasprobe\nruntime:\n  name: python\n  options:\n"
        f"    toolchain: pip\n    virtualenv: {ROOT / '.venv'}\n")
    (project / "__main__.py").write_text(PROBE)
    pulumi(project, "root", "stack", "init", "probe")
    # GIVEN the part deployed at the stack's root
    pulumi(project, "root", "up", "--yes", "--skip-preview")
    assert state_urns(project) == {
        "probe:index:Part::queue",
        "probe:index:Part$pulumi-python:dynamic:Resource::queue-work",
    }
    # WHEN the program moves it under a new component
    preview = json.loads(pulumi(project, "nested", "preview", "--json"))
    # THEN only the new component is created; nothing is replaced or deleted
    assert preview["changeSummary"] == {"create": 1, "same": 3}
    pulumi(project, "nested", "up", "--yes", "--skip-preview")
    assert state_urns(project) == {
        "probe:index:Whole::bridge",
        "probe:index:Whole$probe:index:Part::queue",
        "probe:index:Whole$probe:index:Part$pulumi-python:dynamic:Resource::queue-work",
    }
