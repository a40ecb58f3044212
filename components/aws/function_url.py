"""Userflow's front door when `userflowIngress` is `functionUrl`: the ingest function's own URL.

A function URL costs nothing per request beyond the Lambda invocation, where API Gateway bills
every request; at one webhook per event that is most of the Userflow → Segment cost. It has
no authorizer (NONE): the bridge verifies Userflow's signature itself, exactly as behind the
API. What it does not have: API Gateway's throttle (the ingest function's reserved
concurrency is the bound), its access log (the bridge's own per-request line remains) and
custom domains. The bridge serves only `/userflow` and `/health` on it
(bridge_code/ingest.py), so Segment's route stays behind the API's throttle.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.project import component_type

AUTH_TYPE = "NONE"
# Anyone may call a public URL: the principal of both statements.
PUBLIC = "*"


@dataclass(frozen=True)
class UserflowFunctionUrlArgs:
    """What the function URL needs."""

    name_prefix: str
    """Prefix of every physical name (carries the environment)."""
    ingest_function_name: pulumi.Input[str]


class UserflowFunctionUrl(pulumi.ComponentResource):
    """The ingest function's URL (no IAM auth) and the two statements a public URL needs."""

    function_url: pulumi.Output[str]
    """As AWS gives it: `https://<url-id>.lambda-url.<region>.on.aws/`, with the slash."""
    base_url: pulumi.Output[str]
    """The same without the trailing slash: routes append `/userflow` etc."""

    def __init__(
        self, name: str, args: UserflowFunctionUrlArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(component_type("UserflowFunctionUrl"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        url = aws.lambda_.FunctionUrl(
            f"{name}-url",
            function_name=args.ingest_function_name,
            authorization_type=AUTH_TYPE,
            invoke_mode="BUFFERED",
            opts=child,
        )
        # With AuthType NONE the function's resource policy must still let the public in;
        # since October 2025 a new URL needs both actions (docs: "Control access to Lambda
        # function URLs"). Each statement is narrowed to calls through the URL.
        aws.lambda_.Permission(
            f"{name}-invoke-url",
            statement_id=f"{args.name_prefix}-url-invoke-url",
            action="lambda:InvokeFunctionUrl",
            function=args.ingest_function_name,
            principal=PUBLIC,
            function_url_auth_type=AUTH_TYPE,
            opts=child,
        )
        aws.lambda_.Permission(
            f"{name}-invoke",
            statement_id=f"{args.name_prefix}-url-invoke",
            action="lambda:InvokeFunction",
            function=args.ingest_function_name,
            principal=PUBLIC,
            invoked_via_function_url=True,
            opts=child,
        )
        self.function_url = url.function_url
        self.base_url = url.function_url.apply(lambda value: value.rstrip("/"))
        self.register_outputs({"function_url": self.function_url})
