"""ttrpc: the small RPC protocol containerd speaks to its shims.

Theory of operation
-------------------
gRPC needs HTTP/2, which is a lot of machinery for a process that holds one container, so
containerd talks to shims in *ttrpc* ("tiny transport RPC", github.com/containerd/ttrpc): the
same protobuf services as gRPC, framed on a plain unix stream socket. Every message is one
frame, a 10-byte header followed by data::

    +-------------------------------+-------------------------------+--------+--------+------
    | data length (u32, big endian) | stream id (u32, big endian)   |  type  | flags  | data…
    +-------------------------------+-------------------------------+--------+--------+------
      0                             4                               8        9        10

- type 1 = Request: the data is a `ttrpc.Request{service, method, payload, timeout_nano,
  metadata}` whose payload is the method's own request message (e.g. a CreateTaskRequest).
- type 2 = Response: the data is a `ttrpc.Response{status, payload}`; status is a
  google.rpc.Status carrying a gRPC code (0 OK, 5 NOT_FOUND, 12 UNIMPLEMENTED …).
- type 3 = Data: stream data (streaming RPCs; the shim's Task service has none).
- The client numbers its calls with odd stream ids (1, 3, 5 …) and the server answers each
  request with one response frame carrying the same stream id. Because every frame names its
  stream, one connection carries many calls at once and answers may come back in any order:
  a `Wait` can block for an hour while `State` calls come and go beside it.
- Data is at most 4 MiB; a peer rejects anything larger.

The module is in two halves, in the style of h11: first the protocol with no I/O at all
(`encode_frame`, `FrameDecoder`, `encode_request` …: bytes in, messages out, easy to test and to
read), then thin socket code (`Server`, `Client`) that only moves bytes and threads.
"""

from __future__ import annotations

import enum
import socket
import struct
import threading
from collections import namedtuple
from collections.abc import Callable, Iterable

from labkit.wire.protowire import Any, DecodeError, Field, Message


def _log():
    """This module's logger. Imported when there is something to log (a broken peer, a
    handler's bug): the shim imports this module, and logging costs it ~1.4 MB."""
    import logging

    return logging.getLogger(__name__)

HEADER = struct.Struct(">IIBB")        # length, stream id, type, flags
HEADER_SIZE = HEADER.size              # 10
MAX_DATA = 4 << 20                     # 4 MiB, ttrpc's messageLengthMax

MESSAGE_REQUEST = 1
MESSAGE_RESPONSE = 2
MESSAGE_DATA = 3

FLAG_REMOTE_CLOSED = 0x1               # streaming only: no more data from the sender
FLAG_REMOTE_OPEN = 0x2                 # streaming only: the sender will send data frames
FLAG_NO_DATA = 0x4


class Code(enum.IntEnum):
    """The gRPC status codes (grpc/codes), which ttrpc reuses unchanged."""
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14


class ProtocolError(Exception):
    """The peer broke the framing rules; the connection cannot be trusted any more."""


class RPCError(Exception):
    """A call that ended with a non-OK status (the code and message of google.rpc.Status)."""

    def __init__(self, code: int, message: str):
        super().__init__(code, message)
        self.code = int(code)
        self.message = message

    def __str__(self) -> str:
        try:
            name = Code(self.code).name
        except ValueError:
            name = str(self.code)
        return f"{name}: {self.message}"


# ------------------------------------------------------------------ the protocol, without I/O

# ttrpc's own messages (ttrpc.proto), declared for labkit.wire.protowire: the shim, which
# imports this module, then needs no protobuf runtime (ttrpc_pb2.py is kept for the test that
# checks these declarations against the .proto).
class KeyValue(Message):
    full_name = "ttrpc.KeyValue"
    FIELDS = (Field("key", 1, "string"), Field("value", 2, "string"))


class Request(Message):
    full_name = "ttrpc.Request"
    FIELDS = (Field("service", 1, "string"), Field("method", 2, "string"),
              Field("payload", 3, "bytes"), Field("timeout_nano", 4, "int64"),
              Field("metadata", 5, "message", KeyValue, repeated=True))


class Status(Message):
    full_name = "ttrpc.Status"
    FIELDS = (Field("code", 1, "int32"), Field("message", 2, "string"),
              Field("details", 3, "message", Any, repeated=True))


class Response(Message):
    full_name = "ttrpc.Response"
    FIELDS = (Field("status", 1, "message", Status), Field("payload", 2, "bytes"))


# One frame, decoded. (A namedtuple, not a dataclass: the shim imports this module, and
# `dataclasses` would cost each shim ~1.5 MB of imports.)
Frame = namedtuple("Frame", "stream_id type flags data")


def encode_frame(frame: Frame) -> bytes:
    if len(frame.data) > MAX_DATA:
        raise ProtocolError(f"message of {len(frame.data)} bytes exceeds ttrpc's limit of {MAX_DATA}")
    return HEADER.pack(len(frame.data), frame.stream_id, frame.type, frame.flags) + frame.data


class FrameDecoder:
    """Turns a byte stream, fed in pieces of any size, into whole frames.

    >>> d = FrameDecoder()
    >>> d.feed(b"\\0\\0\\0\\2\\0\\0\\0\\1\\1")     # half a header: nothing yet
    []
    >>> d.feed(b"\\0hi")
    [Frame(stream_id=1, type=1, flags=0, data=b'hi')]
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER_SIZE:
            length, stream_id, mtype, flags = HEADER.unpack_from(self._buffer)
            # Checked on the header, before buffering the data: a peer announcing 1 GiB must not
            # make us allocate it.
            if length > MAX_DATA:
                raise ProtocolError(f"peer announced a message of {length} bytes, over ttrpc's limit of {MAX_DATA}")
            if len(self._buffer) < HEADER_SIZE + length:
                break
            body = bytes(self._buffer[HEADER_SIZE:HEADER_SIZE + length])
            del self._buffer[:HEADER_SIZE + length]
            frames.append(Frame(stream_id, mtype, flags, body))
        return frames

    @property
    def pending(self) -> int:
        """Bytes received that do not form a whole frame yet (non-zero at EOF = truncated)."""
        return len(self._buffer)


def encode_request(stream_id: int, service: str, method: str, payload: bytes, *,
                   timeout_nano: int = 0, metadata: Iterable[tuple[str, str]] = ()) -> bytes:
    request = Request(service=service, method=method, payload=payload, timeout_nano=timeout_nano,
                      metadata=[KeyValue(key=k, value=v) for k, v in metadata])
    return encode_frame(Frame(stream_id, MESSAGE_REQUEST, 0, request.SerializeToString()))


def decode_request(frame: Frame) -> Request:
    if frame.type != MESSAGE_REQUEST:
        raise ProtocolError(f"expected a request frame, got type {frame.type} on stream {frame.stream_id}")
    if frame.stream_id % 2 == 0:
        raise ProtocolError(f"client used an even stream id {frame.stream_id} (client streams are odd)")
    request = Request()
    try:
        request.ParseFromString(frame.data)
    except DecodeError as e:
        raise ProtocolError(f"undecodable request on stream {frame.stream_id}: {e}") from None
    return request


def encode_response(stream_id: int, payload: bytes = b"", *, code: int = Code.OK,
                    message: str = "") -> bytes:
    response = Response(payload=payload)
    if code != Code.OK:
        response.status.code = int(code)
        response.status.message = message
    return encode_frame(Frame(stream_id, MESSAGE_RESPONSE, 0, response.SerializeToString()))


def decode_response(frame: Frame) -> bytes:
    """The response's payload; raises RPCError if its status is not OK."""
    if frame.type != MESSAGE_RESPONSE:
        raise ProtocolError(f"expected a response frame, got type {frame.type} on stream {frame.stream_id}")
    response = Response()
    try:
        response.ParseFromString(frame.data)
    except DecodeError as e:
        raise ProtocolError(f"undecodable response on stream {frame.stream_id}: {e}") from None
    if response.HasField("status") and response.status.code != Code.OK:
        raise RPCError(response.status.code, response.status.message)
    return response.payload


# ------------------------------------------------------------------ thin socket code

# A handler takes the request's payload bytes and returns the response's payload bytes, or
# raises RPCError to answer with that status.
Handler = Callable[[bytes], bytes]


class Server:
    """Serves `{service: {method: handler}}` on a listening unix socket.

    One thread per connection reads frames; each request runs in its own thread, because some
    methods (Wait) block until a container exits and must not hold up the others. Writes to a
    connection are serialized by a lock so that two answers never interleave their bytes.
    """

    def __init__(self, listener: socket.socket, services: dict[str, dict[str, Handler]], *,
                 after_response: Callable[[], None] | None = None):
        self._listener = listener
        self._services = services
        self._after_response = after_response or (lambda: None)
        self._closed = threading.Event()

    def serve_forever(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                if self._closed.is_set():
                    return
                raise
            threading.Thread(target=self._serve_connection, args=(conn,), daemon=True,
                             name="ttrpc-conn").start()

    def close(self) -> None:
        self._closed.set()
        # shutdown() wakes a thread blocked in accept(); close() alone would not.
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()

    def _serve_connection(self, conn: socket.socket) -> None:
        decoder = FrameDecoder()
        write_lock = threading.Lock()
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return  # the client went away; calls still running finish and their answers are dropped
                try:
                    frames = decoder.feed(data)
                    for frame in frames:
                        request = decode_request(frame)
                        threading.Thread(target=self._dispatch, args=(conn, write_lock, frame.stream_id, request),
                                         daemon=True, name=f"ttrpc-{request.method}").start()
                except ProtocolError as e:
                    _log().warning("closing ttrpc connection: %s", e)
                    return

    def _dispatch(self, conn: socket.socket, write_lock: threading.Lock, stream_id: int,
                  request: Request) -> None:
        handler = self._services.get(request.service, {}).get(request.method)
        if handler is None:
            known = request.service in self._services
            reply = encode_response(stream_id, code=Code.UNIMPLEMENTED,
                                    message=f"{'method' if known else 'service'} "
                                            f"{request.service}/{request.method} is not implemented")
        else:
            try:
                reply = encode_response(stream_id, handler(request.payload))
            except RPCError as e:
                reply = encode_response(stream_id, code=e.code, message=e.message)
            except Exception as e:  # a bug in a handler must answer the caller, not kill the shim
                _log().exception("%s/%s failed", request.service, request.method)
                reply = encode_response(stream_id, code=Code.INTERNAL, message=f"{request.method}: {e}")
        try:
            with write_lock:
                conn.sendall(reply)
        except OSError:
            pass  # the caller hung up; nothing to answer
        self._after_response()


class Client:
    """A ttrpc connection that many threads may call through at once.

    Each call takes the next odd stream id, registers a slot for its answer and sends its
    request; one reader thread hands each response frame to the slot with its stream id.
    """

    def __init__(self, path: str, *, connect_timeout: float = 10.0):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(connect_timeout)
        try:
            self._sock.connect(path)
        except OSError:
            self._sock.close()
            raise
        self._sock.settimeout(None)
        self._lock = threading.Lock()
        self._next_stream = 1
        self._pending: dict[int, list] = {}   # stream id -> [event, frame or exception]
        self._broken: Exception | None = None
        self._reader = threading.Thread(target=self._read_loop, daemon=True, name="ttrpc-client")
        self._reader.start()

    def call(self, service: str, method: str, payload: bytes, *, timeout: float | None = None,
             metadata: Iterable[tuple[str, str]] = ()) -> bytes:
        slot = [threading.Event(), None]
        with self._lock:
            if self._broken is not None:
                raise self._broken
            stream_id = self._next_stream
            self._next_stream += 2
            self._pending[stream_id] = slot
            data = encode_request(stream_id, service, method, payload, metadata=metadata,
                                  timeout_nano=int(timeout * 1e9) if timeout else 0)
            self._sock.sendall(data)
        if not slot[0].wait(timeout):
            with self._lock:
                self._pending.pop(stream_id, None)
            raise RPCError(Code.DEADLINE_EXCEEDED, f"{service}/{method}: no answer within {timeout} s")
        result = slot[1]
        if isinstance(result, Exception):
            raise result
        return decode_response(result)

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._reader.join(timeout=5)

    def _read_loop(self) -> None:
        decoder = FrameDecoder()
        error: Exception = ConnectionError("ttrpc connection closed by the server")
        try:
            while True:
                data = self._sock.recv(65536)
                if not data:
                    break
                for frame in decoder.feed(data):
                    with self._lock:
                        slot = self._pending.pop(frame.stream_id, None)
                    if slot is not None:
                        slot[1] = frame
                        slot[0].set()
        except (OSError, ProtocolError) as e:
            error = e if isinstance(e, ProtocolError) else ConnectionError(f"ttrpc connection failed: {e}")
        # Every call still waiting learns that its answer will never come.
        with self._lock:
            self._broken = error
            pending, self._pending = self._pending, {}
        for slot in pending.values():
            slot[1] = error
            slot[0].set()
