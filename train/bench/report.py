"""The benchmark's page (docs/performance.md) and terminal summary: templates filled with figures.

Both templates take the same `summary.Summary`; a table is drawn as markdown for the page
and as aligned text for the terminal. A template's `<!-- if NAME -->` ... `<!-- end if -->`
lines keep what they enclose only where the summary's condition NAME holds.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Callable, Mapping
from pathlib import Path

from train.bench.summary import Summary, Table
from train.results import write_text

PAGE_TEMPLATE = Path(__file__).with_name("performance.md.template")
TEXT_TEMPLATE = Path(__file__).with_name("terminal.txt.template")
_BLOCK = re.compile(r"^<!-- if (\w+) -->\n(.*?)^<!-- end if -->\n", re.M | re.S)


def markdown_table(table: Table) -> str:
    """The table in GitHub markdown."""
    lines = ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def text_table(table: Table) -> str:
    """The table as aligned columns: figures to the right, words and lists to the left."""
    rows = [table.header, *table.rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(table.header))]
    right = [all(_is_number(row[i]) for row in table.rows) for i in range(len(table.header))]
    lines = []
    for row in rows:
        cells = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def fill(template: str, values: Mapping[str, str], conditions: Mapping[str, bool]) -> str:
    """`template` with its conditional blocks kept or dropped and every ${name} replaced."""
    kept = _BLOCK.sub(lambda m: m.group(2) if conditions[m.group(1)] else "", template)
    return string.Template(kept).substitute(values)


def render(
    summary: Summary,
    template: str,
    draw: Callable[[Table], str],
    extra: Mapping[str, str] | None = None,
) -> str:
    """`template` filled with the summary's figures, `extra` ones, and its tables drawn by
    `draw`."""
    tables = {f"{name}_table": draw(table) for name, table in summary.tables.items()}
    return fill(template, {**summary.figures, **(extra or {}), **tables}, summary.conditions)


def page(summary: Summary) -> str:
    """docs/performance.md: the figures, how they were made, and which engine to use when."""
    return render(summary, PAGE_TEMPLATE.read_text(encoding="utf-8"), markdown_table)


def text(summary: Summary) -> str:
    """The summary printed at the end of `make bench`."""
    return render(summary, TEXT_TEMPLATE.read_text(encoding="utf-8"), text_table)


def write_page(summary: Summary, path: str | os.PathLike) -> Path:
    """Writes the page to `path` (atomically); returns the path."""
    return write_text(path, page(summary))
