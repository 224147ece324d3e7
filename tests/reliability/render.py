"""Write docs/guarantees.md from the latest reliability run: `python -m tests.reliability.render`.

The guarantees are stated here; every figure comes from `.gatehouse-dev/reliability/figures-*.json`,
written by the last run of the suite (`make test` runs it). Nothing is typed in by hand.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / ".gatehouse-dev" / "reliability"  # written by the `report` fixture in tests/conftest.py
OUT = ROOT / "docs" / "guarantees.md"

GUARANTEES = Path(__file__).with_name("guarantees.yaml")


def latest_run() -> list[Path]:
    """The figure files of the newest run (one per xdist worker)."""
    files = sorted(RESULTS.glob("figures-*-*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        return []
    run = files[-1].name.split("-")[1]
    return [p for p in files if p.name.split("-")[1] == run]


def load_figures() -> dict[str, dict[str, object]]:
    figures: dict[str, dict[str, object]] = {}
    for path in latest_run():
        figures.update(json.loads(path.read_text()))
    return figures


def render(figures: dict[str, dict[str, object]]) -> str:
    stamp = max((p.stat().st_mtime for p in latest_run()), default=0.0)
    measured = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M UTC") if stamp else "never"
    lines = [
        "# What Gatehouse guarantees, and the test that proves each",
        "",
        f"Figures from the latest run of the reliability suite ({measured}, {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}), written by "
        "`python -m tests.reliability.render`. Every figure is measured by the tests named beside it.",
        "",
    ]
    for guarantee in yaml.safe_load(GUARANTEES.read_text(encoding="utf-8")):
        prefixes = tuple(guarantee["figures"])
        lines += [f"## {guarantee['title']}", "", guarantee["statement"], ""]
        lines += [f"Proved by: `{guarantee['tests']}`", "", "| figure | value | target |", "|---|---|---|"]
        rows = [(name, fig) for name, fig in sorted(figures.items()) if name.startswith(prefixes)]
        for name, fig in rows:
            value = f"{fig['value']} {fig.get('unit') or ''}".strip()
            lines.append(f"| {name} | {value} | {fig.get('target') or ''} |")
        if not rows:
            lines.append("| (no figure recorded in the latest run) | | |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(load_figures()), encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
