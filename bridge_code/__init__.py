"""The bridge between Segment and Userflow: AWS Lambda code with no third-party dependency.

Entry points: `bridge_code.ingest.handler` (API Gateway HTTP API, payload 2.0) and
`bridge_code.delivery.handler` (SQS with ReportBatchItemFailures). The mapping core
(`bridge_code.mapping`) and signature checks (`bridge_code.signatures`) are pure.
"""

from pathlib import Path


def _read_version() -> str:
    # The project's one VERSION file: the Lambda zip carries it beside this module (the
    # packager puts it there), a checkout has it at the repository's root.
    here = Path(__file__).resolve().parent
    for candidate in (here / "VERSION", here.parent / "VERSION"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8").strip()
    raise RuntimeError(f"no VERSION file in {here} or {here.parent}")


VERSION = _read_version()
