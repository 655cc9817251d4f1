"""The one way a report writes a number into a table cell."""

from __future__ import annotations


def cell(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    """value formatted by `spec` (and `suffix`), or "-" where there is none."""
    return "-" if value is None else f"{value:{spec}}{suffix}"
