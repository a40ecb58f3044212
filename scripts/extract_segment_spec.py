"""Write the subset of Segment's Public API OpenAPI document that this repository ships.

    python scripts/extract_segment_spec.py PATH/segment-public-api-openapi-v36.2.0.yaml

PATH is the official document (https://docs.segmentapis.com, "Download OpenAPI spec"),
version 36.2.0. The output, `sandbox/segment/public-api-v36.2.0.subset.json`, holds only the
operations the Segment emulator serves (its route table, `sandbox.segment.routes`, which
covers every call the project's clients make), their parameters and the schemas they reach,
without descriptions, examples, summaries or `x-*` extensions: the facts the emulator
validates against, so that a plain clone runs without the official file. `--check` compares
instead of writing (exit 1 when the committed file differs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def render(document: dict[str, object]) -> str:
    """The committed form: stable key order, two-space indent, a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO_ROOT))  # run as a file: make the repository importable
    from sandbox.segment.spec import SHIPPED_SPEC_PATH, SPEC_VERSION, extract_subset, read_spec

    parser = argparse.ArgumentParser(
        prog="python scripts/extract_segment_spec.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("spec", type=Path, help=f"the official document, v{SPEC_VERSION}")
    parser.add_argument("--out", type=Path, default=SHIPPED_SPEC_PATH, help="where to write")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    try:
        full = read_spec(args.spec.read_bytes(), args.spec.name)
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.spec}: {exc}", file=sys.stderr)
        return 2
    found = str(full.get("info", {}).get("version"))
    if found != SPEC_VERSION:
        print(f"{args.spec} is version {found}; this project pins {SPEC_VERSION}", file=sys.stderr)
        return 2
    text = render(extract_subset(full))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} differs from what {args.spec} gives: regenerate it", file=sys.stderr)
            return 1
        print(f"{args.out} matches {args.spec}")
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text.encode()) // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
