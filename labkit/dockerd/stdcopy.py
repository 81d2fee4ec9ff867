"""Byte formats of container output: multiplexed frames and json-file log lines.

Pure protocol logic, no I/O (bytes in, bytes or records out), in the style of h11.

Multiplexed stream (moby `pkg/stdcopy`)
---------------------------------------
When a container has no TTY its stdout and stderr travel over ONE connection (attach,
logs), so each write is wrapped in a frame that says which stream it belongs to::

    +--------+-------+-------+-------+---------------------------+----------------+
    | stream |   0   |   0   |   0   | payload length (uint32 BE) | payload bytes  |
    +--------+-------+-------+-------+---------------------------+----------------+

stream: 0 stdin, 1 stdout, 2 stderr, 3 "system error" (the client reports it as an error).
With a TTY there is only one stream and the bytes go unframed ("raw stream").

json-file log (the default logging driver)
------------------------------------------
Every line a container prints is stored as one JSON object per line in
`<root>/containers/<id>/<id>-json.log`::

    {"log":"hello\\n","stream":"stdout","time":"2026-11-23T00:38:04.123456789Z"}

`docker logs` replays this file, so output survives the container's exit.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass
from typing import Iterator

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}
_HEADER = struct.Struct(">BxxxI")  # stream byte, 3 bytes padding, big-endian length
HEADER_SIZE = _HEADER.size          # 8

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"


def frame(stream: int, payload: bytes) -> bytes:
    """Wrap `payload` in one multiplexed-stream frame."""
    if stream not in (STDIN, STDOUT, STDERR, SYSTEMERR):
        raise ValueError(f"invalid stream number {stream}: must be 0, 1, 2 or 3")
    return _HEADER.pack(stream, len(payload)) + payload


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, get complete (stream, payload) frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        frames = []
        while len(self._buf) >= HEADER_SIZE:
            stream, size = _HEADER.unpack_from(self._buf)
            if stream not in (STDIN, STDOUT, STDERR, SYSTEMERR):
                raise ValueError(f"invalid frame header: stream byte {stream}")
            if len(self._buf) < HEADER_SIZE + size:
                break
            frames.append((stream, bytes(self._buf[HEADER_SIZE:HEADER_SIZE + size])))
            del self._buf[:HEADER_SIZE + size]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered (non-zero at EOF = truncated stream)."""
        return len(self._buf)


def demultiplex(data: bytes) -> dict[int, bytes]:
    """Split a complete multiplexed byte string into the bytes of each stream."""
    decoder = FrameDecoder()
    out: dict[int, bytes] = {}
    for stream, payload in decoder.feed(data):
        out[stream] = out.get(stream, b"") + payload
    if decoder.pending:
        raise ValueError(f"truncated frame: {decoder.pending} bytes left over")
    return out


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
        yield payload if tty else frame(e.stream, payload)
