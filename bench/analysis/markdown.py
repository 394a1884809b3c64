"""Markdown tables: one writer for REPORT.md, `bench check --markdown` and `bench claims`."""

from __future__ import annotations


def _cell(x) -> str:
    # A '|' inside a cell would end it early: escape it.
    return str(x).replace("|", "\\|")


def md_table(header: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured markdown table; cells are str()-ed and their '|' escaped."""
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_cell, r)) + " |" for r in rows]
    return "\n".join(lines)
