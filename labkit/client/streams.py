"""The two stream formats of the Engine API, as protocol logic without I/O (bytes in, events out).

1. The multiplexed stream (attach and logs of a container without a TTY): stdout and stderr
   share one socket, each chunk behind an 8-byte header. Its codec is wire knowledge that
   labkit-dockerd needs too, so it lives in one neutral module both import, labkit.stdcopy
   (moby's pkg/stdcopy); this module re-exports it (Frame, FrameDecoder, encode_frame and the
   stream numbers) so that a client needs only labkit.client. With a TTY there is no header
   at all: the bytes are the terminal's, raw.

2. The JSON message stream (pull, push, build): JSON objects one after another, separated by
   "\\r\\n", e.g. {"status":"Pulling fs layer","progressDetail":{},"id":"04a6c31e335f"}. An error
   arrives in-band after the 200: {"errorDetail":{"message":"…"},"error":"…"}.

Both decoders accept bytes in pieces of any size — a frame header may be split across two
socket reads — and return whatever complete events the bytes so far contain.
"""

from __future__ import annotations

import json

# The multiplexed stream's codec, shared with labkit-dockerd (see labkit.stdcopy): re-exported.
from labkit.stdcopy import (STDERR, STDIN, STDOUT, SYSTEMERR, Frame, FrameDecoder,  # noqa: F401
                            encode_frame)

__all__ = ["STDIN", "STDOUT", "STDERR", "SYSTEMERR", "Frame", "FrameDecoder", "encode_frame",
           "JSONStreamDecoder"]


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
