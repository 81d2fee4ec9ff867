"""The Engine API's multiplexed stream: stdout and stderr on one connection (moby `pkg/stdcopy`).

This is wire knowledge, owned by neither end. In Docker, the daemon (which frames a
container's output for `attach` and `logs`) and the client (which splits it again) both
import one small package, github.com/docker/docker/pkg/stdcopy. labkit does the same:
labkit-dockerd (labkit.dockerd.router, for attach, exec and logs) and the Engine API client
(labkit.client.api, for `labkit run` and `labkit logs`) both import this module, so the
two ends can never disagree on a byte. It sits below every layer and imports nothing of
labkit: the daemon may import it without the client, the client without the daemon.

Pure protocol logic, no I/O (bytes in, frames out), in the style of h11.

Wire format
-----------
When a container has no TTY its stdout and stderr travel over ONE connection (attach,
logs), so each write is wrapped in a frame that says which stream it belongs to::

    +--------+-------+-------+-------+---------------------------+----------------+
    | stream |   0   |   0   |   0   | payload length (uint32 BE) | payload bytes  |
    +--------+-------+-------+-------+---------------------------+----------------+

stream: 0 stdin, 1 stdout, 2 stderr, 3 "system error" (the daemon's own message; the
client reports it as an error). With a TTY there is only one stream and the bytes go
unframed ("raw stream"). The response's Content-Type says which of the two it is.

The decoder accepts bytes in pieces of any size — a frame header may be split across two
socket reads — and returns whatever complete frames the bytes so far contain.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
_STREAMS = (STDIN, STDOUT, STDERR, SYSTEMERR)
_HEADER = struct.Struct(">BxxxI")  # stream byte, 3 bytes padding, big-endian length
HEADER_SIZE = _HEADER.size          # 8

# The Content-Type of an attach or logs answer: framed (no TTY) or raw bytes (TTY).
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"


class Frame(NamedTuple):
    """One frame: which stream, and its bytes. A tuple, so `for stream, data in ...` works."""

    stream: int   # STDOUT, STDERR or SYSTEMERR (STDIN is never sent by a daemon)
    data: bytes


def encode_frame(stream: int, payload: bytes) -> bytes:
    """Wrap `payload` in one multiplexed-stream frame (the inverse of FrameDecoder)."""
    if stream not in _STREAMS:
        raise ValueError(f"invalid stream number {stream}: must be 0, 1, 2 or 3")
    return _HEADER.pack(stream, len(payload)) + payload


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, get complete Frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while len(self._buf) >= HEADER_SIZE:
            stream, size = _HEADER.unpack_from(self._buf)
            if stream not in _STREAMS:
                raise ValueError(f"bad multiplexed stream: unknown stream id {stream} "
                                 "(is the container using a TTY? then the stream is raw)")
            if len(self._buf) < HEADER_SIZE + size:
                break  # the rest of this frame is still on its way
            frames.append(Frame(stream, bytes(self._buf[HEADER_SIZE:HEADER_SIZE + size])))
            del self._buf[:HEADER_SIZE + size]
        return frames

    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered (non-zero at EOF = truncated stream)."""
        return len(self._buf)


def demultiplex(data: bytes) -> dict[int, bytes]:
    """Split a complete multiplexed byte string into the bytes of each stream."""
    decoder = FrameDecoder()
    out: dict[int, bytes] = {}
    for stream, payload in decoder.feed(data):
        out[stream] = out.get(stream, b"") + payload
    if decoder.pending():
        raise ValueError(f"truncated frame: {decoder.pending()} bytes left over")
    return out
