"""How the docker CLI formats things, so that `labkit` output reads like `docker` output.

- tables: columns padded with three spaces (docker's tabwriter settings), headers in capitals;
- "2 minutes ago": go-units' HumanDuration, which rounds coarsely on purpose ("About an hour"),
  and "13.3kB": go-units' HumanSizeWithPrecision(size, 3) — both from labkit.units, the
  helpers the daemon uses too (in Docker, the CLI and dockerd share go-units the same way);
- several arguments (`rm a b c`): each is tried, a failure is one "Error response from
  daemon: …" line on stderr, and the exit status is 1 if any failed;
- pull progress: the jsonmessage renderer. On a terminal, each layer id owns one line that is
  redrawn in place (cursor up, clear, write, cursor down); elsewhere (a pipe, a CI log) the
  bars are dropped and each status change is one plain line.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from labkit.client import APIError
from labkit.units import human_duration


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    lines = []
    for row in [headers] + rows:
        cells = [c.ljust(w) for c, w in zip(row, widths)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def ago(unix_time: float, now: float | None = None) -> str:
    """How long ago `unix_time` was, as `docker ps` and `docker images` say it ("3 minutes ago")."""
    return human_duration((now or time.time()) - unix_time) + " ago"


def for_each(names: list[str], action: Callable[[str], None]) -> int:
    """Run `action` on every argument the way `docker rm` and `docker rmi` do: a daemon error
    is reported for that argument and the others are still tried. Returns the exit status:
    0, or 1 if any failed."""
    status = 0
    for name in names:
        try:
            action(name)
        except APIError as e:
            print(f"Error response from daemon: {e.message}", file=sys.stderr)
            status = 1
    return status


def ellipsis(s: str, width: int) -> str:
    return s if len(s) <= width else s[:width - 1] + "…"


class ProgressPrinter:
    """Render a JSON message stream the way docker's jsonmessage package does."""

    def __init__(self, out: TextIO, terminal: bool):
        self.out = out
        self.terminal = terminal
        self.lines: dict[str, int] = {}  # layer id -> its line in the current block

    def show(self, msg: dict) -> None:
        has_progress = isinstance(msg.get("progressDetail"), dict)
        progress_text = msg.get("progress", "") if msg.get("progressDetail") else ""
        ident = msg.get("id", "")
        diff = 0
        if ident and has_progress:
            if ident not in self.lines:
                self.lines[ident] = len(self.lines)
                if self.terminal:
                    self.out.write("\n")  # make room for the new line at the bottom
            diff = len(self.lines) - self.lines[ident]
            if self.terminal:
                self.out.write(f"\x1b[{diff}A")
        else:
            # A message that owns no line ends the block: later ids start a new one.
            self.lines = {}
        self._display(msg, ident, has_progress, progress_text)
        if ident and self.terminal and diff:
            self.out.write(f"\x1b[{diff}B")
        self.out.flush()

    def _display(self, msg: dict, ident: str, has_progress: bool, progress_text: str) -> None:
        endl = ""
        if self.terminal and has_progress and not msg.get("stream"):
            self.out.write("\x1b[2K\r")
            endl = "\r"
        elif progress_text:
            return  # no progress bars outside a terminal
        if ident:
            self.out.write(f"{ident}: ")
        status = msg.get("status", "")
        if has_progress and self.terminal:
            self.out.write(f"{status} {progress_text}{endl}")
        elif msg.get("stream"):
            self.out.write(msg["stream"] + endl)
        else:
            self.out.write(f"{status}{endl}\n")
