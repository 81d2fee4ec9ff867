"""The json-file log: container output as Docker stores and replays it (no I/O but read_log).

The multiplexed stream that `attach` and `logs` send (8-byte frames, stdout and stderr on
one connection) is wire knowledge shared with the client: it lives in labkit.stdcopy.
This module is the daemon's side of output: how a line is stored, when it was written,
and which frames a stored line becomes on `docker logs`.

json-file log (the default logging driver)
------------------------------------------
Every line a container prints is stored as one JSON object per line in
`<root>/containers/<id>/<id>-json.log`::

    {"log":"hello\\n","stream":"stdout","time":"2026-11-23T00:38:04.123456789Z"}

`docker logs` replays this file, so output survives the container's exit.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Iterator

from labkit.stdcopy import STDERR, STDOUT, encode_frame

STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}


# ---------------------------------------------------------------- time stamps

def rfc3339nano(ns: int | None = None) -> str:
    """Go's time.RFC3339Nano in UTC, as Docker writes timestamps: 2026-11-23T00:38:04.123456789Z."""
    if ns is None:
        ns = time.time_ns()
    seconds, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    # Go trims trailing zeros of the fraction (and the dot if nothing is left)
    digits = f"{frac:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time: "never" in StartedAt/FinishedAt


# ---------------------------------------------------------------- json-file log

@dataclass(frozen=True)
class LogEntry:
    stream: int       # STDOUT or STDERR
    data: bytes       # one line, with its "\n" (the last line of an output may lack it)
    time: str         # RFC3339Nano


def split_lines(pending: bytes, data: bytes) -> tuple[list[bytes], bytes]:
    """Cut `pending + data` into complete lines (each ending in \\n) and a remainder.

    The log driver stores one entry per line, like Docker's; a copier keeps the
    remainder and passes it back with the next chunk (and flushes it at EOF).
    """
    buf = pending + data
    lines = []
    start = 0
    while True:
        nl = buf.find(b"\n", start)
        if nl < 0:
            break
        lines.append(buf[start:nl + 1])
        start = nl + 1
    return lines, buf[start:]


def encode_log_line(entry: LogEntry) -> bytes:
    record = {"log": entry.data.decode("utf-8", errors="replace"),
              "stream": STREAM_NAMES[entry.stream], "time": entry.time}
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def decode_log_line(line: bytes) -> LogEntry:
    record = json.loads(line)
    stream = STDERR if record.get("stream") == "stderr" else STDOUT
    return LogEntry(stream, record.get("log", "").encode("utf-8"), record.get("time", ZERO_TIME))


def read_log(path: str, offset: int = 0) -> tuple[list[LogEntry], int]:
    """Entries of a json-file log from byte `offset` on, and the offset after the last full line.

    A line still being written (no trailing newline yet) is left for the next call.
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    entries = []
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        if line.strip():
            entries.append(decode_log_line(line))
    return entries, offset + end


def iter_frames(entries: list[LogEntry], tty: bool, timestamps: bool) -> Iterator[bytes]:
    """What `GET /containers/{id}/logs` sends for these entries: framed, or raw with a TTY."""
    for e in entries:
        payload = (e.time.encode() + b" " + e.data) if timestamps else e.data
        yield payload if tty else encode_frame(e.stream, payload)
