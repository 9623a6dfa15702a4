"""The run report (report.md) and the course index of `dlc run all`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def table(rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; the first row is the header."""
    if not rows:
        return ""
    # A '|' inside a cell would end the cell early (e.g. "−log p(x|z)"); Markdown's escape keeps it text.
    head, *body = [[str(c).replace("|", "\\|") for c in row] for row in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def plain_table(rows: Sequence[Sequence[Any]]) -> str:
    """A table for the terminal: columns padded to their widest cell, a rule under the header."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def lab_report(
    lab: Any,
    lab_config: Any,
    result: Any,
    figures: Sequence[tuple[str, str]],
    config: dict[str, Any],
    runtime: dict[str, Any],
    quick: bool,
    seconds: float,
) -> str:
    """report.md: the three steps first, then what was measured, the figures and the exact config."""
    parts = [f"# {lab.title} (`{lab.id}`)\n\n"]
    parts.append(table([("step", "what this lab uses"), *lab.three_steps(lab_config)]))
    mode = "quick" if quick else "full"
    parts.append(
        f"\nData: {lab.data}.  \nRun: {mode} mode, seed {runtime['seed']}, device {runtime['device_name']} "
        f"({runtime['device_note']}), {runtime['threads']} thread{'s' if runtime['threads'] != 1 else ''}, {seconds:.1f} s.\n"
    )
    if result.table:
        parts.append("\n## Results\n\n" + table(result.table))
    if result.findings:
        parts.append("\n## What the numbers say\n\n" + "\n".join(f"- {f}" for f in result.findings) + "\n")
    if figures:
        parts.append("\n## Figures\n")
        for rel, caption in figures:
            parts.append(f"\n![{caption or rel}]({rel})\n\n{caption}\n")
    parts.append("\n## Config\n\n```json\n" + json.dumps(config, indent=2) + "\n```\n")
    return "".join(parts)


def course_index(entries: Sequence[dict[str, Any]], quick: bool, seconds: float) -> str:
    """The index of `dlc run all`: one row per lab with its three steps, status and headline."""
    mode = "quick" if quick else "full"
    parts = [
        "# Deep Learning – Concepts and PyTorch Development: the course, run\n\n",
        "Every lab follows the course's three steps: (1) define the function to be learned, "
        "(2) define a loss, (3) find the parameters that minimize it.\n\n",
        f"{len(entries)} labs, {mode} mode, {seconds:.1f} s in all.\n\n",
    ]
    rows: list[tuple[str, ...]] = [("lab", "function", "loss", "minimizer", "status", "result")]
    for e in entries:
        link = f"[{e['id']}]({e['id']}/report.md)"
        rows.append((link, e["function"], e["loss"], e["minimizer"], e["status"], e["headline"]))
    parts.append(table(rows))
    return "".join(parts)
