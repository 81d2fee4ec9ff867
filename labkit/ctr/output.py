"""ctr's output: tables through Go's text/tabwriter, sizes in binary units.

ctr builds every listing with tabwriter.NewWriter(out, 1, 8, 1, ' ', 0) and cells ended by
a tab: each column is as wide as its widest cell plus one space of padding, the last
column too (its cells end with a tab as well).
"""

from __future__ import annotations

import sys
from typing import TextIO

_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


def table(header: list[str], rows: list[list[str]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    lines = [header] + rows
    widths = [max(len(line[i]) for line in lines) + 1 for i in range(len(header))]
    for line in lines:
        out.write("".join(cell.ljust(w) for cell, w in zip(line, widths)) + "\n")


def size(n: int) -> str:
    """containerd's progress.Bytes: 1024-based units, one decimal ("772.8 KiB", "2.1 MiB")."""
    value, unit = float(n), 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{value:.1f} {_UNITS[unit]}"


def labels(mapping: dict[str, str]) -> str:
    """k=v,k2=v2 sorted, or "-" for none (as ctr's listings print them)."""
    return ",".join(f"{k}={v}" for k, v in sorted(mapping.items())) or "-"
