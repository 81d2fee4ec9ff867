"""The shim's log: one line per event on its stderr, which is the bundle's `log` fifo that
containerd reads (or <bundle>/shim.log).

Why not the logging module: a shim lives as long as its container, one per container, and
`import logging` (with traceback, string, re, weakref …) costs each of them ~1.4 MB -- a tenth
of what containerd's own shim uses in all. The shim needs five functions and one format, so
it has them here, with logging's names (`log = getLogger(__name__)`, `log.info("%s", x)`), and
the same lines logging wrote::

    2026-01-02 03:04:05,678 shim[4242] web: INFO task web created, init pid 4250

Until the daemon calls configure(), only warnings and errors are written (logging's default
too): a TaskService used in-process, by a test or a notebook, stays quiet.
"""

from __future__ import annotations

import os
import sys
import time

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARNING", ERROR: "ERROR"}
_level = WARNING
_prefix = ""


def configure(level: int, prefix: str) -> None:
    """Write messages of `level` and above, each line starting with the time and `prefix`."""
    global _level, _prefix
    _level, _prefix = level, prefix


class Logger:
    def __init__(self, name: str):
        self.name = name

    def _write(self, level: int, message: str, args: tuple, trace: bool = False) -> None:
        if level < _level:
            return
        if args:
            message = message % args
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        line = f"{stamp},{int(now % 1 * 1000):03d} {_prefix or self.name}: {_NAMES[level]} {message}\n"
        if trace:
            import traceback    # only when there is a traceback to show
            line += traceback.format_exc()
        try:
            os.write(sys.stderr.fileno(), line.encode(errors="replace"))
        except (OSError, ValueError):
            pass                # no reader on the log fifo: the container matters more than the log

    def debug(self, message: str, *args) -> None:
        self._write(DEBUG, message, args)

    def info(self, message: str, *args) -> None:
        self._write(INFO, message, args)

    def warning(self, message: str, *args) -> None:
        self._write(WARNING, message, args)

    def error(self, message: str, *args) -> None:
        self._write(ERROR, message, args)

    def exception(self, message: str, *args) -> None:
        """An error, with the traceback of the exception being handled."""
        self._write(ERROR, message, args, trace=True)


def getLogger(name: str) -> Logger:
    return Logger(name)
