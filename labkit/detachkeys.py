"""Detach keys: the key sequence that leaves a container running and ends an attach.

`docker run -it`, `docker attach` and `docker start -ai` copy every key the user types to
the container — ctrl-c included, that is what a terminal in raw mode means. So one key
sequence is reserved to mean "let go": by default ctrl-p followed by ctrl-q, or the one
given with `--detach-keys` (the API's `detachKeys` query parameter of attach, or
`DetachKeys` of an exec). Typed, it ends the attach; the container keeps running.

Both sides watch for it, and this module is that knowledge, shared (as labkit.stdcopy is):
the client, to stop reading the terminal; the daemon, for clients that send everything
(docker-py). moby does the daemon side only when the container has a TTY: without one,
stdin is data (a file piped in may hold any byte) and is copied as it is.

The format (moby's term.ToBytes): keys separated by commas, each one character ("a") or
"ctrl-" and one of a-z @ [ \\ ] ^ _ (ctrl-a is 1 ... ctrl-z is 26, ctrl-@ is 0,
ctrl-[ is 27 ... ctrl-_ is 31: the byte a terminal sends for that chord).

    >>> parse("ctrl-p,ctrl-q")
    b'\\x10\\x11'
    >>> m = EscapeMatcher(b"\\x10\\x11")
    >>> m.feed(b"ls\\x10"), m.feed(b"\\x11")
    ((b'ls', False), (b'', True))
"""

from __future__ import annotations

DEFAULT = b"\x10\x11"  # ctrl-p ctrl-q

_CTRL_SPECIAL = "@[\\]^_"


def parse(spec: str) -> bytes:
    """"ctrl-p,ctrl-q" -> b"\\x10\\x11"; "" -> the default. ValueError for a bad key."""
    if not spec:
        return DEFAULT
    out = bytearray()
    for key in spec.split(","):
        lowered = key.lower()
        if len(key) == 1:
            out.append(ord(key))
        elif lowered.startswith("ctrl-") and len(key) == 6:
            c = lowered[5]
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in _CTRL_SPECIAL:
                out.append(_CTRL_SPECIAL.index(c) + (0 if c == "@" else 26))
            else:
                raise ValueError(f"Invalid detach keys ({spec}) provided")
        else:
            raise ValueError(f"Invalid detach keys ({spec}) provided")
        if out[-1] > 0x7f:
            raise ValueError(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class EscapeMatcher:
    """Watches a byte stream for the detach sequence.

    `feed(data)` returns (bytes to pass on, detached?). Bytes that might begin the sequence
    are held back until the next chunk shows whether they do (as moby's escapeProxy does):
    ctrl-p alone reaches the container only once the key after it is not ctrl-q."""

    def __init__(self, keys: bytes = DEFAULT) -> None:
        self.keys = keys
        self._held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        out = bytearray()
        for byte in data:
            candidate = self._held + bytes([byte])
            if self.keys.startswith(candidate):
                if candidate == self.keys:
                    self._held = b""
                    return bytes(out), True
                self._held = candidate
                continue
            # not the sequence: what was held goes on, and this byte may start it anew
            out += self._held
            self._held = b""
            if self.keys[:1] == bytes([byte]):
                self._held = bytes([byte])
            else:
                out.append(byte)
        return bytes(out), False
