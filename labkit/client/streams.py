"""The two stream formats of the Engine API, as protocol logic without I/O (bytes in, events out).

1. The multiplexed stream (attach and logs of a container without a TTY). stdout and stderr
   share one socket, so each chunk carries an 8-byte header:

       +--------+--------+--------+--------+--------+--------+--------+--------+
       | stream |   0    |   0    |   0    |      payload length (uint32 BE)   |
       +--------+--------+--------+--------+--------+--------+--------+--------+
       stream: 0 stdin, 1 stdout, 2 stderr, 3 system error (the daemon's own message)

   With a TTY there is no header at all: the bytes are the terminal's, raw.

2. The JSON message stream (pull, push, build): JSON objects one after another, separated by
   "\\r\\n", e.g. {"status":"Pulling fs layer","progressDetail":{},"id":"04a6c31e335f"}. An error
   arrives in-band after the 200: {"errorDetail":{"message":"…"},"error":"…"}.

Both decoders accept bytes in pieces of any size — a frame header may be split across two
socket reads — and return whatever complete events the bytes so far contain.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
_HEADER = struct.Struct(">BxxxI")  # stream byte, 3 padding bytes, big-endian length


@dataclass(frozen=True)
class Frame:
    stream: int   # STDOUT, STDERR or SYSTEMERR
    data: bytes


def encode_frame(stream: int, data: bytes) -> bytes:
    """The inverse of FrameDecoder (for tests and for servers)."""
    return _HEADER.pack(stream, len(data)) + data


class FrameDecoder:
    """Split a multiplexed stream into Frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while len(self._buf) >= _HEADER.size:
            stream, length = _HEADER.unpack_from(self._buf)
            if stream not in (STDIN, STDOUT, STDERR, SYSTEMERR):
                raise ValueError(f"bad multiplexed stream: unknown stream id {stream} "
                                 "(is the container using a TTY? then the stream is raw)")
            if len(self._buf) < _HEADER.size + length:
                break  # the rest of this frame is still on its way
            frames.append(Frame(stream, bytes(self._buf[_HEADER.size:_HEADER.size + length])))
            del self._buf[:_HEADER.size + length]
        return frames

    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame (non-zero at EOF = truncated stream)."""
        return len(self._buf)


class JSONStreamDecoder:
    """Split a JSON message stream into dicts. Separators are optional whitespace, so both
    docker's "\\r\\n" and a bare "\\n" (or none at all) work."""

    def __init__(self) -> None:
        self._buf = ""
        self._raw = bytearray()  # undecoded bytes: a UTF-8 character may be split across reads
        self._json = json.JSONDecoder()

    def feed(self, data: bytes) -> list[dict]:
        self._raw += data
        try:
            self._buf += self._raw.decode()
            self._raw.clear()
        except UnicodeDecodeError as e:
            if e.start < len(self._raw) - 3:
                raise ValueError(f"bad JSON stream: invalid UTF-8 at byte {e.start}") from None
            self._buf += self._raw[:e.start].decode()
            del self._raw[:e.start]
        messages = []
        while True:
            text = self._buf.lstrip()
            if not text:
                self._buf = ""
                break
            try:
                obj, end = self._json.raw_decode(text)
            except json.JSONDecodeError:
                self._buf = text  # incomplete object: wait for more bytes
                break
            if not isinstance(obj, dict):
                raise ValueError(f"bad JSON stream: expected an object, got {text[:40]!r}")
            messages.append(obj)
            self._buf = text[end:]
        return messages

    def pending(self) -> str:
        return self._buf.strip()
