"""How labkit-runc reports: runc's log format, because the shim parses it.

runc writes log records to the file named by `--log` (stderr without it), one per line:

    --log-format json   {"level":"error","msg":"container does not exist","time":"…"}
    --log-format text   time="…" level=error msg="container does not exist"

A command that fails writes an `error` record and exits 1. The shim reads the LAST error
line of the log file and reports it upwards as "OCI runtime create failed: <msg>", which is
how `docker run` ends up printing our message. When the log goes to a file, the error is
also printed plainly on stderr, for a human at the terminal (runc does the same).
"""

from __future__ import annotations

import sys
import time

from labkit import quickjson      # not json: see labkit.quickjson (every command imports this)


class ContainerError(Exception):
    """A failure to report to the caller with runc's wording (the message is the whole story)."""


class LogConfig:
    def __init__(self, path: str | None = None, format: str = "text", debug: bool = False):
        self.path = path             # None: stderr
        self.format = format         # "text" or "json"
        self.debug = debug


_config = LogConfig()


def configure(path: str | None, fmt: str = "text", debug: bool = False) -> None:
    if fmt not in ("text", "json"):
        raise ContainerError(f"invalid log format: {fmt!r} (want text or json)")
    global _config
    _config = LogConfig(path or None, fmt, debug)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _record(level: str, msg: str) -> str:
    if _config.format == "json":
        return quickjson.dumps({"level": level, "msg": msg, "time": _now()})
    return f'time="{_now()}" level={level} msg={quickjson.dumps(msg)}'


def _write(level: str, msg: str) -> None:
    line = _record(level, msg) + "\n"
    if _config.path is None:
        sys.stderr.write(line)
        sys.stderr.flush()
        return
    try:
        # Append, never truncate: the shim reads the file after each command.
        with open(_config.path, "a") as f:
            f.write(line)
    except OSError as e:
        sys.stderr.write(f"labkit-runc: cannot write log {_config.path}: {e.strerror}\n{line}")


def debug(msg: str) -> None:
    if _config.debug:
        _write("debug", msg)


def info(msg: str) -> None:
    _write("info", msg)


def warning(msg: str) -> None:
    _write("warning", msg)


def error(msg: str) -> None:
    """Record a fatal error; on a log file also print it plainly on stderr, like runc."""
    _write("error", msg)
    if _config.path is not None:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()
