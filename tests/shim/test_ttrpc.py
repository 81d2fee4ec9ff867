"""ttrpc framing: the protocol half has no I/O, so these tests feed it bytes and look at frames.

The last tests put the thin socket half on a real unix socket pair (no root needed) to check
multiplexing: a blocked call does not hold up the others on the same connection.
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import threading
import time

import pytest

from labkit.wire import ttrpc, ttrpc_pb2
from labkit.wire.shim import task_pb2
from labkit.wire.ttrpc import (MESSAGE_REQUEST, MESSAGE_RESPONSE, Code, Frame, FrameDecoder,
                               ProtocolError, RPCError)


def test_header_is_ten_bytes_big_endian():
    raw = ttrpc.encode_frame(Frame(stream_id=3, type=MESSAGE_REQUEST, flags=0, data=b"abc"))
    assert raw == b"\x00\x00\x00\x03" + b"\x00\x00\x00\x03" + b"\x01" + b"\x00" + b"abc"


def test_decoder_reassembles_frames_fed_byte_by_byte():
    frames = [Frame(1, MESSAGE_REQUEST, 0, b"first"), Frame(3, MESSAGE_REQUEST, 0, b""),
              Frame(5, MESSAGE_REQUEST, 0, b"x" * 1000)]
    wire = b"".join(ttrpc.encode_frame(f) for f in frames)
    decoder = FrameDecoder()
    got = []
    for i in range(len(wire)):
        got += decoder.feed(wire[i:i + 1])
    assert got == frames
    assert decoder.pending == 0


def test_decoder_returns_several_frames_from_one_chunk_and_keeps_the_rest():
    wire = ttrpc.encode_frame(Frame(1, 1, 0, b"a")) + ttrpc.encode_frame(Frame(3, 1, 0, b"bb"))
    decoder = FrameDecoder()
    assert decoder.feed(wire + b"\x00\x00") == [Frame(1, 1, 0, b"a"), Frame(3, 1, 0, b"bb")]
    assert decoder.pending == 2


def test_oversized_message_is_rejected_from_its_header():
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match="over ttrpc's limit"):
        decoder.feed(struct.pack(">IIBB", ttrpc.MAX_DATA + 1, 1, MESSAGE_REQUEST, 0))
    with pytest.raises(ProtocolError):
        ttrpc.encode_frame(Frame(1, MESSAGE_REQUEST, 0, b"x" * (ttrpc.MAX_DATA + 1)))


def test_request_round_trip_matches_ttrpc_field_numbers():
    payload = task_pb2.StateRequest(id="c1").SerializeToString()
    wire = ttrpc.encode_request(7, "containerd.task.v2.Task", "State", payload,
                                metadata=[("containerd-namespace-ttrpc", "moby")])
    (frame,) = FrameDecoder().feed(wire)
    assert (frame.stream_id, frame.type) == (7, MESSAGE_REQUEST)
    request = ttrpc.decode_request(frame)
    assert (request.service, request.method, request.payload) == ("containerd.task.v2.Task", "State", payload)
    assert [(kv.key, kv.value) for kv in request.metadata] == [("containerd-namespace-ttrpc", "moby")]
    # Field 1 (service) is a length-delimited string: tag byte (1 << 3) | 2 = 0x0a.
    assert frame.data[0] == 0x0A and frame.data[2:25] == b"containerd.task.v2.Task"


def test_request_with_even_stream_id_is_a_protocol_error():
    (frame,) = FrameDecoder().feed(ttrpc.encode_request(2, "s", "m", b""))
    with pytest.raises(ProtocolError, match="even stream id"):
        ttrpc.decode_request(frame)


def test_response_ok_and_error():
    (ok,) = FrameDecoder().feed(ttrpc.encode_response(1, b"payload"))
    assert ok.type == MESSAGE_RESPONSE and ttrpc.decode_response(ok) == b"payload"
    (bad,) = FrameDecoder().feed(ttrpc.encode_response(3, code=Code.NOT_FOUND, message="no such task"))
    with pytest.raises(RPCError) as e:
        ttrpc.decode_response(bad)
    assert (e.value.code, e.value.message) == (Code.NOT_FOUND, "no such task")
    status = ttrpc_pb2.Response.FromString(bad.data).status
    assert (status.code, status.message) == (5, "no such task")


def test_undecodable_payload_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="undecodable"):
        ttrpc.decode_request(Frame(1, MESSAGE_REQUEST, 0, b"\xff\xff\xff"))


def test_task_messages_use_containerds_field_numbers():
    # StateResponse.status is field 4 (varint, tag 0x20); exit_status is field 9 (tag 0x48).
    raw = task_pb2.StateResponse(status=task_pb2.STOPPED, exit_status=3).SerializeToString()
    assert raw == bytes([0x20, 3, 0x48, 3])


# ------------------------------------------------------------------ over a real socket

@pytest.fixture
def server():
    release = threading.Event()

    def slow(payload: bytes) -> bytes:
        release.wait(10)
        return b"slow:" + payload

    def fail(payload: bytes) -> bytes:
        raise RPCError(Code.FAILED_PRECONDITION, "not now")

    d = tempfile.mkdtemp(dir="/tmp", prefix="ttrpc-")
    path = os.path.join(d, "s")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    srv = ttrpc.Server(listener, {"test.Echo": {"Echo": lambda p: p, "Slow": slow, "Fail": fail}})
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield path, release
    finally:
        release.set()
        srv.close()
        t.join(5)
        os.unlink(path)
        os.rmdir(d)


def test_calls_are_multiplexed_on_one_connection(server):
    path, release = server
    client = ttrpc.Client(path)
    try:
        results = []
        slow = threading.Thread(target=lambda: results.append(client.call("test.Echo", "Slow", b"1")))
        slow.start()
        time.sleep(0.1)
        # answered while the first call on the same connection is still blocked
        assert client.call("test.Echo", "Echo", b"hi", timeout=5) == b"hi"
        assert not results
        release.set()
        slow.join(5)
        assert results == [b"slow:1"]
    finally:
        client.close()


def test_errors_and_unknown_methods_come_back_as_status(server):
    path, _ = server
    client = ttrpc.Client(path)
    try:
        with pytest.raises(RPCError) as e:
            client.call("test.Echo", "Fail", b"")
        assert e.value.code == Code.FAILED_PRECONDITION
        with pytest.raises(RPCError) as e:
            client.call("test.Echo", "Nope", b"")
        assert e.value.code == Code.UNIMPLEMENTED
    finally:
        client.close()


def test_event_envelope_is_what_containerd_expects():
    from datetime import datetime, timezone

    from labkit.shim import events
    from labkit.wire.shim import events_pb2, messages

    exit_event = messages.TaskExit(container_id="c1", id="c1", pid=42, exit_status=3)
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    req = events.envelope(exit_event, "moby", when)
    assert (req.envelope.namespace, req.envelope.topic) == ("moby", "/tasks/exit")
    assert req.envelope.event.type_url == "containerd.events.TaskExit"
    decoded = events_pb2.TaskExit.FromString(req.envelope.event.value)   # as containerd reads it
    assert decoded.SerializeToString() == exit_event.SerializeToString()
    assert (decoded.container_id, decoded.id, decoded.pid, decoded.exit_status) == ("c1", "c1", 42, 3)
    assert req.envelope.timestamp.ToDatetime(tzinfo=timezone.utc) == when
