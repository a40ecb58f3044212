"""Draws the dashboard's layout as an SVG, from the same document the stack deploys.

    .venv/bin/python -m scripts.render_dashboard            # writes docs/dashboard.svg
    .venv/bin/python -m scripts.render_dashboard --check    # fails if the file is stale

Each widget becomes a box at its grid position with its title and what it plots, so the
README's picture cannot drift from `components.aws.dashboard` (a test re-renders it). Plain
SVG text: nothing to install.
"""

from __future__ import annotations

import argparse
import sys
from html import escape
from pathlib import Path
from typing import Any

from components.aws.dashboard import (
    GRID_COLUMNS,
    DashboardSettings,
    DashboardTargets,
    dashboard_body,
)
from components.aws.metrics import BridgeMetricsDefinition

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "dashboard.svg"
UNIT_WIDTH = 40  # pixels per grid column
UNIT_HEIGHT = 30  # pixels per grid row
GAP = 4
PAD = 8
TITLE_SIZE = 12
DETAIL_SIZE = 10
CHAR_WIDTH = 0.56  # average glyph width of a sans-serif font, in font sizes
FILL = {"text": "#f3f4f6", "alarm": "#fdecea", "metric": "#ffffff"}
STROKE = {"text": "#9ca3af", "alarm": "#d9534f", "metric": "#3b82f6"}

# What the picture is drawn from. Names and numbers do not appear in it (only titles and
# what each graph plots), so any stack's values give the same picture.
EXAMPLE_DEFINITION = BridgeMetricsDefinition("staging")
EXAMPLE_TARGETS = DashboardTargets(
    region="eu-central-1", queue_name="work", dead_letter_queue_name="dead-letter",
    ingest_function_name="ingest", delivery_function_name="delivery", api_id="api",
    stage_name="$default", alarm_arns=("dead-letter", "delivery-errors", "api-5xx", "age"),
)
EXAMPLE_SETTINGS = DashboardSettings(period_seconds=300, queue_age_alarm_seconds=900)


def wrap(text: str, width_px: float, size: int) -> list[str]:
    """`text` in lines that fit `width_px` at font size `size` (words are never split)."""
    limit = max(1, int(width_px / (size * CHAR_WIDTH)))
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= limit or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    return [*lines, current] if current else lines


def widget_title(widget: dict[str, Any]) -> str:
    properties = widget["properties"]
    if widget["type"] == "text":
        first = str(properties["markdown"]).splitlines()[0]
        return first.lstrip("#").strip()
    return str(properties["title"])


def widget_detail(widget: dict[str, Any]) -> str:
    """What the widget plots, in a few words."""
    properties = widget["properties"]
    if widget["type"] == "text":
        return "what this dashboard shows"
    if widget["type"] == "alarm":
        return f"state of the stack's {len(properties['alarms'])} alarms"
    labels: list[str] = []
    for metric in properties["metrics"]:
        options = metric[-1] if isinstance(metric[-1], dict) else {}
        if "expression" in options:
            labels.append("one line per reason (search)")
        else:
            labels.append(str(options.get("label", metric[1])))
    return " · ".join(labels)


def render_svg(body: dict[str, Any]) -> str:
    """The layout of a dashboard body as an SVG document (deterministic text)."""
    widgets = body["widgets"]
    height = max(w["y"] + w["height"] for w in widgets)
    canvas_w, canvas_h = GRID_COLUMNS * UNIT_WIDTH, height * UNIT_HEIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{canvas_w}" height="{canvas_h}" '
        f'viewBox="0 0 {canvas_w} {canvas_h}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect width="{canvas_w}" height="{canvas_h}" fill="#e5e7eb"/>',
    ]
    for widget in widgets:
        kind = widget["type"]
        x = widget["x"] * UNIT_WIDTH + GAP / 2
        y = widget["y"] * UNIT_HEIGHT + GAP / 2
        w = widget["width"] * UNIT_WIDTH - GAP
        h = widget["height"] * UNIT_HEIGHT - GAP
        parts.append(f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}" rx="4" '
                     f'fill="{FILL[kind]}" stroke="{STROKE[kind]}"/>')
        line_y = y + PAD + TITLE_SIZE
        for line in wrap(widget_title(widget), w - 2 * PAD, TITLE_SIZE):
            parts.append(f'<text x="{x + PAD:g}" y="{line_y:g}" font-size="{TITLE_SIZE}" '
                         f'font-weight="bold" fill="#111827">{escape(line)}</text>')
            line_y += TITLE_SIZE + 3
        line_y += 2
        for line in wrap(widget_detail(widget), w - 2 * PAD, DETAIL_SIZE):
            parts.append(f'<text x="{x + PAD:g}" y="{line_y:g}" font-size="{DETAIL_SIZE}" '
                         f'fill="#4b5563">{escape(line)}</text>')
            line_y += DETAIL_SIZE + 3
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def example_svg() -> str:
    """The picture of the dashboard as `components.aws.dashboard` defines it today."""
    return render_svg(dashboard_body(EXAMPLE_DEFINITION, EXAMPLE_TARGETS, EXAMPLE_SETTINGS))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    parser.add_argument("--out", type=Path, default=OUTPUT,
                        help=f"the SVG to write or check (default {OUTPUT.relative_to(ROOT)})")
    options = parser.parse_args(argv)
    svg = example_svg()
    if options.check:
        current = options.out.read_text(encoding="utf-8") if options.out.exists() else ""
        if current != svg:
            print(f"{options.out} is stale: run python -m scripts.render_dashboard",
                  file=sys.stderr)
            return 1
        return 0
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(svg, encoding="utf-8")
    print(f"wrote {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
