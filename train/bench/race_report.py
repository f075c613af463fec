"""The race's page (docs/race.md) and terminal summary: `race_summary`'s figures in templates.

The page is `race.md.template` filled as the benchmark's page is (`report.fill`, its
tables in markdown); the terminal shows the headline table as aligned text.
"""

from __future__ import annotations

import os
from pathlib import Path

from train.bench import report
from train.bench.plots import TARGET_RACE_CHART
from train.bench.summary import Summary
from train.results import write_text

PAGE_TEMPLATE = Path(__file__).with_name("race.md.template")


def page(summary: Summary, chart: str = f"performance/{TARGET_RACE_CHART}") -> str:
    """docs/race.md, linking to the chart at `chart` (a path from the page's folder)."""
    template = PAGE_TEMPLATE.read_text(encoding="utf-8")
    return report.render(summary, template, report.markdown_table, dict(chart=chart))


def text(summary: Summary) -> str:
    """The summary printed at the end of `python -m train.race`."""
    lines = [
        f"Time to validation accuracy {summary.figures['target']}, over BP's "
        "(mean ± std over seeds):",
        report.text_table(summary.tables["headline"]),
    ]
    if summary.conditions["missing"]:
        lines.append(f"Not run yet: {summary.figures['missing']}.")
    return "\n".join(lines)


def write_page(summary: Summary, path: str | os.PathLike, chart: str | os.PathLike) -> Path:
    """Writes the page to `path` (atomically), linking to the chart at `chart`; returns
    the path."""
    link = Path(os.path.relpath(chart, Path(path).parent)).as_posix()
    return write_text(path, page(summary, link))
