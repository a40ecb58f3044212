"""The bridge between Segment and Userflow: AWS Lambda code with no third-party dependency.

Entry points: `bridge_code.ingest.handler` (API Gateway HTTP API, payload 2.0) and
`bridge_code.delivery.handler` (SQS with ReportBatchItemFailures). The mapping core
(`bridge_code.mapping`) and signature checks (`bridge_code.signatures`) are pure.
"""

VERSION = "0.1.0"
