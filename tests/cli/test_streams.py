"""The Engine API's stream formats, decoded without I/O: bytes in any pieces, events out."""

from __future__ import annotations

import pytest

from labkit.client.streams import (STDERR, STDOUT, SYSTEMERR, Frame, FrameDecoder,
                                   JSONStreamDecoder, encode_frame)


def test_frames_survive_any_split():
    wire = encode_frame(STDOUT, b"hello\n") + encode_frame(STDERR, b"oops\n") + encode_frame(STDOUT, b"")
    for cut in range(len(wire) + 1):
        d = FrameDecoder()
        frames = d.feed(wire[:cut]) + d.feed(wire[cut:])
        assert frames == [Frame(STDOUT, b"hello\n"), Frame(STDERR, b"oops\n"), Frame(STDOUT, b"")]
        assert d.pending() == 0


def test_frame_header_layout_is_dockers():
    # [stream][0 0 0][uint32 BE length], as in the captured trace: stdout, 0x327 = 807 bytes
    assert encode_frame(STDOUT, b"x" * 807)[:8] == b"\x01\x00\x00\x00\x00\x00\x03\x27"


def test_truncated_frame_is_pending():
    d = FrameDecoder()
    assert d.feed(encode_frame(SYSTEMERR, b"daemon says no")[:-3]) == []
    assert d.pending() > 0


def test_raw_tty_bytes_are_rejected_with_a_hint():
    with pytest.raises(ValueError, match="unknown stream id 72.*TTY"):
        FrameDecoder().feed(b"Hello from a tty\n")


def test_json_stream_crlf_and_splits():
    wire = ('{"status":"Pulling from library/busybox","id":"latest"}\r\n'
            '{"status":"Downloading","progressDetail":{"current":1,"total":2},"id":"abc"}\r\n'
            '{"status":"Status: caf\u00e9"}\r\n').encode()
    for cut in range(len(wire) + 1):
        d = JSONStreamDecoder()
        msgs = d.feed(wire[:cut]) + d.feed(wire[cut:])
        assert [m["status"] for m in msgs] == ["Pulling from library/busybox", "Downloading",
                                               "Status: caf\u00e9"]
        assert d.pending() == ""


def test_json_stream_rejects_non_objects():
    with pytest.raises(ValueError, match="expected an object"):
        JSONStreamDecoder().feed(b'[1, 2]\r\n')
