"""Alarms that say the bridge is losing or failing events, with an optional SNS target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.ledger import SWITCHABLE
from components.project import component_type

# 5xx share of requests, computed by CloudWatch metric math; no requests means no failures.
API_5XX_RATE_EXPRESSION = "IF(requests > 0, 100 * errors / requests, 0)"
# With Userflow's webhooks on the ingest function's URL, `errors` and `requests` add that
# URL's counts to the API's. Each side publishes only when it has something to count, so a
# missing point is a zero there (FILL), not a hole in the sum.
URL_ERRORS_EXPRESSION = "FILL(api_errors, 0) + FILL(url_errors, 0)"
URL_REQUESTS_EXPRESSION = "FILL(api_requests, 0) + FILL(url_requests, 0)"
MetricQuery = aws.cloudwatch.MetricAlarmMetricQueryArgs
# Ledger requests refused for exceeding the table's provisioned capacity, writes and reads
# (DynamoDB publishes each only for periods that had one, hence the fill).
LEDGER_THROTTLED_EXPRESSION = "FILL(writes, 0) + FILL(reads, 0)"


@dataclass(frozen=True)
class BridgeAlarmsArgs:
    """What the alarms component needs."""

    name_prefix: str
    """Prefix of every physical name (carries the environment)."""
    queue_name: pulumi.Input[str]
    dead_letter_queue_name: pulumi.Input[str]
    delivery_function_name: pulumi.Input[str]
    api_id: pulumi.Input[str]
    stage_name: pulumi.Input[str]
    dead_letter_threshold: int
    """Visible dead-letter messages that raise the alarm."""
    delivery_errors_threshold: int
    """Delivery invocation errors per period that raise the alarm."""
    api_5xx_rate_percent: float
    """Share of API requests answered 5xx (percent) that raises the alarm."""
    queue_age_seconds: int
    """Age of the oldest message in the work queue (seconds) that raises the alarm."""
    ledger_table_name: pulumi.Input[str] | None
    """The ledger table when it is provisioned (then throttling is alarmed); None: on demand."""
    ledger_throttled_threshold: int
    """Throttled ledger requests per period that raise the alarm."""
    period_seconds: int
    evaluation_periods: int
    topic_arn: str | None
    """SNS topic notified on alarm and recovery; None: alarms only show in the console."""
    userflow_function_name: pulumi.Input[str] | None = None
    """The ingest function, when Userflow's webhooks arrive through its URL: the URL's
    requests and 5xx answers then count in the 5xx rate beside the API's."""


class BridgeAlarms(pulumi.ComponentResource):
    """Dead-letter queue not empty, delivery errors, API 5xx rate, delivery stalled, and
    the ledger throttled when its capacity is provisioned."""

    alarm_names: pulumi.Output[list[str]]
    alarm_arns: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: BridgeAlarmsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(component_type("BridgeAlarms"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        actions = [args.topic_arn] if args.topic_arn else []
        # Shared by all: no data (an idle bridge) is healthy, and the threshold is met
        # by >= (a single dead-lettered event is worth a look).
        common: dict[str, Any] = {
            "alarm_actions": actions,
            "ok_actions": actions,
            "evaluation_periods": args.evaluation_periods,
            "comparison_operator": "GreaterThanOrEqualToThreshold",
            "treat_missing_data": "notBreaching",
            "opts": child,
        }

        dead_letter = aws.cloudwatch.MetricAlarm(
            f"{name}-dead-letter",
            name=f"{args.name_prefix}-dead-letter-not-empty",
            alarm_description="Events failed permanently and wait in the dead-letter queue.",
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": args.dead_letter_queue_name},
            statistic="Maximum",
            period=args.period_seconds,
            threshold=args.dead_letter_threshold,
            **common,
        )
        delivery_errors = aws.cloudwatch.MetricAlarm(
            f"{name}-delivery-errors",
            name=f"{args.name_prefix}-delivery-errors",
            alarm_description="The delivery function failed invocations (not item failures).",
            namespace="AWS/Lambda",
            metric_name="Errors",
            dimensions={"FunctionName": args.delivery_function_name},
            statistic="Sum",
            period=args.period_seconds,
            threshold=args.delivery_errors_threshold,
            **common,
        )
        via_url = args.userflow_function_name is not None
        api_5xx = aws.cloudwatch.MetricAlarm(
            f"{name}-api-5xx-rate",
            name=f"{args.name_prefix}-api-5xx-rate",
            alarm_description=(
                "The bridge API and Userflow's function URL answer 5xx to a share of "
                "requests (percent)." if via_url
                else "The bridge API answers 5xx to a share of requests (percent)."),
            threshold=args.api_5xx_rate_percent,
            metric_queries=[
                aws.cloudwatch.MetricAlarmMetricQueryArgs(
                    id="rate",
                    expression=API_5XX_RATE_EXPRESSION,
                    label="5xx rate (%)",
                    return_data=True,
                ),
                *_rate_inputs(args),
            ],
            **common,
        )

        # A stalled delivery is the failure users notice last: nothing errors, nothing is
        # dead-lettered, events just stop arriving. The age of the oldest queued message
        # says so whatever the cause (poller disabled, throttled, upstream slow, a bug).
        queue_age = aws.cloudwatch.MetricAlarm(
            f"{name}-queue-age",
            name=f"{args.name_prefix}-delivery-stalled",
            alarm_description="The oldest message in the work queue has waited too long "
                              "(seconds): delivery is stalled or falling behind.",
            namespace="AWS/SQS",
            metric_name="ApproximateAgeOfOldestMessage",
            dimensions={"QueueName": args.queue_name},
            statistic="Maximum",
            period=args.period_seconds,
            threshold=args.queue_age_seconds,
            **common,
        )

        alarms = [dead_letter, delivery_errors, api_5xx, queue_age]
        if args.ledger_table_name is not None:
            switchable = {**common, "opts": pulumi.ResourceOptions.merge(child, SWITCHABLE)}
            alarms.append(self._ledger_throttled(name, args, args.ledger_table_name, switchable))
        self.alarm_names = pulumi.Output.all(*(alarm.name for alarm in alarms))
        self.alarm_arns = pulumi.Output.all(*(alarm.arn for alarm in alarms))
        self.register_outputs({"alarm_names": self.alarm_names, "alarm_arns": self.alarm_arns})

    @staticmethod
    def _ledger_throttled(
        name: str, args: BridgeAlarmsArgs, table_name: pulumi.Input[str], common: dict[str, Any]
    ) -> aws.cloudwatch.MetricAlarm:
        """Requests refused for exceeding the provisioned capacity. botocore retries each
        (up to 3 times); one refused every time makes ingest answer 503 (Segment retries) or
        leaves the message to SQS: nothing is lost, but the scaler is not keeping up."""
        return aws.cloudwatch.MetricAlarm(
            f"{name}-ledger-throttled",
            name=f"{args.name_prefix}-ledger-throttled",
            alarm_description="Ledger requests exceeded the table's provisioned capacity "
                              "(throttled writes + reads per period).",
            threshold=args.ledger_throttled_threshold,
            metric_queries=[
                aws.cloudwatch.MetricAlarmMetricQueryArgs(
                    id="throttled",
                    expression=LEDGER_THROTTLED_EXPRESSION,
                    label="throttled requests",
                    return_data=True,
                ),
                *(
                    aws.cloudwatch.MetricAlarmMetricQueryArgs(
                        id=query_id,
                        metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                            namespace="AWS/DynamoDB",
                            metric_name=metric_name,
                            dimensions={"TableName": table_name},
                            period=args.period_seconds,
                            stat="Sum",
                        ),
                    )
                    for query_id, metric_name in (("writes", "WriteThrottleEvents"),
                                                  ("reads", "ReadThrottleEvents"))
                ),
            ],
            **common,
        )


def _rate_inputs(args: BridgeAlarmsArgs) -> list[MetricQuery]:
    """`errors` and `requests` for the rate: the API's 5xx and Count; with Userflow on the
    function URL, those plus the URL's Url5xxCount and UrlRequestCount."""

    def metric(query_id: str, namespace: str, metric_name: str,
               dimensions: dict[str, pulumi.Input[str]]) -> MetricQuery:
        return aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id=query_id,
            metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                namespace=namespace,
                metric_name=metric_name,
                dimensions=dimensions,
                period=args.period_seconds,
                stat="Sum",
            ),
        )

    api = {"ApiId": args.api_id, "Stage": args.stage_name}
    if args.userflow_function_name is None:
        return [metric("errors", "AWS/ApiGateway", "5xx", api),
                metric("requests", "AWS/ApiGateway", "Count", api)]
    url = {"FunctionName": args.userflow_function_name}
    return [
        aws.cloudwatch.MetricAlarmMetricQueryArgs(id="errors", expression=URL_ERRORS_EXPRESSION),
        aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id="requests", expression=URL_REQUESTS_EXPRESSION),
        metric("api_errors", "AWS/ApiGateway", "5xx", api),
        metric("api_requests", "AWS/ApiGateway", "Count", api),
        metric("url_errors", "AWS/Lambda", "Url5xxCount", url),
        metric("url_requests", "AWS/Lambda", "UrlRequestCount", url),
    ]
