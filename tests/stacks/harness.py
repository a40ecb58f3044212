"""Runs the Pulumi program (`__main__.py`) of one stack under Pulumi mocks and records what
it registers: every resource's type, logical name, parent, protect flag and raw inputs (with
Pulumi's secret markers intact), and the stack's exports.

Why a subprocess per stack (`python -m tests.stacks.harness --stack staging --out f.json`):
the Pulumi runtime keeps process-global state (settings, root stack, config, the program's
module), so two stacks in one interpreter would leak into each other. A fresh interpreter
gives each stack exactly what `pulumi up` gives it. The AWS provider plugin cannot be had
offline, so AWS resources are answered by the mocks below with plausible outputs (ARNs,
URLs) derived from the inputs; the dynamic Segment/Userflow resources are answered by type.
"""

from __future__ import annotations

import argparse
import json
import logging
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks

from tests.recording_monitor import RecordingMonitor

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "userflow-segment"
ACCOUNT = "123456789012"
# Pulumi's wire marker for a secret value (sdk/go/common/resource/sig).
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"

# Test values for the stack files' secret placeholders, and for the dynamic resources' secret
# outputs: all share a prefix, so a leak anywhere is one substring search away.
LEAK_MARKER = "TEST-SECRET-"
CONFIG_SECRETS = {
    f"{PROJECT}:segmentToken": f"{LEAK_MARKER}segment-token",
    f"{PROJECT}:userflowApiKey": f"{LEAK_MARKER}userflow-api-key",
}
# Dynamic resource type -> outputs (docs/ARCHITECTURE.md's seam table).
DYNAMIC_OUTPUTS: dict[str, dict[str, str]] = {
    "segment:Source": {"source_id": "", "write_key": f"{LEAK_MARKER}write-key"},
    "segment:SourceLookup": {"source_id": "src_app"},
    "segment:WebhookDestination": {
        "destination_id": "dst_bridge", "subscription_id": "sub_bridge",
        "shared_secret": f"{LEAK_MARKER}shared-secret",
        # What the bridge accepts when no rotation is under way: the secret in use.
        "accepted_shared_secrets": f"{LEAK_MARKER}shared-secret",
    },
    "userflow:WebhookSubscription": {
        "subscription_id": "ufsub_bridge", "secret": f"{LEAK_MARKER}webhook-secret",
        "accepted_secrets": f"{LEAK_MARKER}webhook-secret",
    },
}


def engine_string(value: Any) -> str:
    """A stack-file value as the engine hands it to the program (objects as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def stack_config(stack: str, overrides: dict[str, str | None]) -> tuple[dict[str, str], list[str]]:
    """The stack file's config, secure placeholders replaced by test values, then overrides
    (`None` removes a key)."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (document.get("config") or {}).items():
        if isinstance(value, dict) and "secure" in value:
            config[key] = CONFIG_SECRETS[key]
            secret_keys.append(key)
        else:
            config[key] = engine_string(value)
    # Secrets are placeholders in the staging/production files (set with `pulumi config set
    # --secret`); give them test values as a real run would have them.
    for key, value in CONFIG_SECRETS.items():
        if key not in config:
            config[key] = value
            secret_keys.append(key)
    for key, override in overrides.items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if override is None:
            config.pop(full, None)
        else:
            config[full] = override
            if full in secret_keys:
                # An override is a plain `pulumi config set` (no --secret).
                secret_keys.remove(full)
    return config, secret_keys


class StackMocks(pulumi_mocks.Mocks):
    """Plausible provider answers: the inputs back, plus ids, ARNs and URLs from names."""

    def __init__(self, region: str) -> None:
        self.region = region

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        name = str(state.get("name") or args.name)
        region, typ = self.region, args.typ
        arn = f"arn:aws:mock:{region}:{ACCOUNT}:{name}"
        if typ.startswith("pulumi-python:dynamic/"):
            token = typ.removeprefix("pulumi-python:dynamic/")
            for key, value in DYNAMIC_OUTPUTS.get(token, {}).items():
                if state.get(key) is None:
                    # An empty value stands for an id derived from the slug (one per source).
                    state[key] = value or f"src-{state.get('slug', args.name)}"
            return f"{args.name}-id", state
        if typ == "aws:sqs/queue:Queue":
            arn = f"arn:aws:sqs:{region}:{ACCOUNT}:{name}"
            state["url"] = f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{name}"
            return state["url"], {**state, "arn": arn}
        if typ == "aws:secretsmanager/secret:Secret":
            arn = f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{name}-AbCdEf"
            return arn, {**state, "arn": arn}
        if typ == "aws:cloudwatch/logGroup:LogGroup":
            return name, {**state, "arn": f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{name}"}
        if typ == "aws:dynamodb/table:Table":
            return name, {**state, "arn": f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/{name}"}
        if typ == "aws:iam/role:Role":
            return name, {**state, "arn": f"arn:aws:iam::{ACCOUNT}:role/{name}"}
        if typ == "aws:lambda/function:Function":
            arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}"
            invoke = (f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/"
                      f"{arn}/invocations")
            return name, {**state, "arn": arn, "invokeArn": invoke}
        if typ == "aws:lambda/functionUrl:FunctionUrl":
            # AWS picks the url-id; the URL ends in a slash, like a $default stage's.
            url_id = f"url-{state['functionName']}"
            state["functionUrl"] = f"https://{url_id}.lambda-url.{region}.on.aws/"
            return state["functionName"], {**state, "urlId": url_id}
        if typ == "aws:apigatewayv2/api:Api":
            api_id = f"api-{name}"
            return api_id, {
                **state,
                "executionArn": f"arn:aws:execute-api:{region}:{ACCOUNT}:{api_id}",
                "apiEndpoint": f"https://{api_id}.execute-api.{region}.amazonaws.com",
            }
        if typ == "aws:apigatewayv2/stage:Stage":
            api_id = state["apiId"]
            # $default's invoke URL ends in a slash and carries no stage path.
            state["invokeUrl"] = f"https://{api_id}.execute-api.{region}.amazonaws.com/"
            return f"{api_id}-stage", state
        return f"{args.name}-id", {**state, "arn": arn}

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        # The program uses no invokes (policies are built as data); any call is a finding.
        raise AssertionError(f"unexpected invoke {args.token}")


class WarningRecorder(logging.Handler):
    """Keeps the warnings the program logs through the engine (`pulumi.log.warn`)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_stack(stack: str, overrides: dict[str, str | None]) -> dict[str, Any]:
    """Run the program for `stack` and return what it registered and exported."""
    config, secret_keys = stack_config(stack, overrides)
    mocks = StackMocks(config.get("aws:region", "local-region"))
    monitor = RecordingMonitor(mocks)
    warnings = WarningRecorder()
    logger = logging.getLogger(f"stack-{stack}")
    logger.addHandler(warnings)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor,
                             logger=logger)
    pulumi.runtime.set_all_config(config, secret_keys)
    exports: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[Any]:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        root = pulumi.runtime.get_root_resource()
        outputs: dict[str, Any] = root.outputs  # type: ignore[union-attr]
        names = sorted(outputs)

        def record(values: list[Any]) -> None:
            exports.update(zip(names, values, strict=True))

        return pulumi.Output.all(*(outputs[n] for n in names)).apply(record)

    program()
    secret_exports = sorted(
        name
        for name, output in pulumi.runtime.get_root_resource().outputs.items()  # type: ignore[union-attr]
        if pulumi.runtime.sync_await._sync_await(pulumi.Output.from_input(output).is_secret())
    )
    return {
        "stack": stack,
        "config": config,
        "resources": monitor.registrations,
        "exports": exports,
        "secret_exports": secret_exports,
        "warnings": warnings.messages,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stack", required=True, help="the stack whose Pulumi.<stack>.yaml to use")
    parser.add_argument("--out", required=True, type=Path,
                        help="where to write the recorded resources (JSON)")
    parser.add_argument("--overrides", default="{}", help="JSON object: key -> value or null")
    options = parser.parse_args(argv)
    try:
        result = run_stack(options.stack, json.loads(options.overrides))
    except Exception as error:
        result = {"error": str(error), "error_type": type(error).__name__,
                  "traceback": traceback.format_exc()}
    options.out.write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
