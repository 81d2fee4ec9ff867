"""dockerd's connection to labkit-containerd (moby's `libcontainerd/remote`).

One gRPC channel to containerd's socket, one stub per service of
labkit/wire/containerd/api.proto, and the namespace ("moby") in the metadata of every call,
as dockerd does (all three come from labkit.containerd.client.Client). gRPC failures become `RemoteError` with the status code's name, and
`to_daemon_error` turns them into the Engine API's errors: NOT_FOUND stays a 404 (which
is what makes `docker run` pull a missing image), ALREADY_EXISTS and FAILED_PRECONDITION
become 409, INVALID_ARGUMENT 400, and an unreachable containerd a 500 that names the socket.
"""

from __future__ import annotations

import socket
from typing import Any, Iterator

import grpc
from google.protobuf import empty_pb2

from labkit.wire.containerd import api_pb2 as pb
from labkit.containerd.client import Client
from labkit.dockerd.errors import (Conflict, DaemonError, InvalidParameter, NotFound,
                                   SystemError_)

SNAPSHOTTER = "overlayfs"   # the default; labkit-dockerd --storage-driver picks another
RECONNECT_WAIT = 2.0   # seconds a call waits for the channel once containerd is back


class RemoteError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code     # "NOT_FOUND", "UNAVAILABLE", ...
        self.message = message


class Containerd:
    """labkit.containerd.client.Client (the stubs, the namespace in every call's metadata)
    plus what dockerd adds: errors translated, a few calls made often."""

    def __init__(self, address: str, namespace: str, snapshotter: str = SNAPSHOTTER) -> None:
        self.address = address
        self.namespace = namespace
        self.snapshotter = snapshotter   # for images pulled and containers created
        self.client = Client(address, namespace)
        self.version_svc = self.client.version
        self.content = self.client.content
        self.images = self.client.images
        self.transfer = self.client.transfer
        self.snapshots = self.client.snapshots
        self.containers = self.client.containers
        self.tasks = self.client.tasks
        self.leases = self.client.leases
        self.diff = self.client.diff

    def close(self) -> None:
        self.client.close()

    def call(self, method: Any, request: Any, timeout: float | None = 60,
             metadata: list[tuple[str, str]] | None = None) -> Any:
        """One unary call, e.g. call(self.images.Get, pb.GetImageRequest(name=...)).

        A call fails at once while containerd is away (UNAVAILABLE). When containerd has just
        come back, the channel may not have noticed yet (it reconnects on a timer): if the
        socket accepts connections again, the call waits for the channel (2 s at most) and is
        made once more.
        """
        try:
            return method(request, timeout=timeout, metadata=metadata)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or not _accepts(self.address):
                raise self._error(e) from None
            try:
                self.client.wait_ready(RECONNECT_WAIT)
            except grpc.FutureTimeoutError:
                raise self._error(e) from None
        try:
            return method(request, timeout=timeout, metadata=metadata)
        except grpc.RpcError as e:
            raise self._error(e) from None

    def stream(self, method: Any, request: Any,
               metadata: list[tuple[str, str]] | None = None) -> Iterator[Any]:
        """A streaming call (`request` may be an iterator of requests), errors translated
        while iterating; `metadata` e.g. [(LEASE_KEY, id)] to work under a lease."""
        try:
            yield from method(request, metadata=metadata)
        except grpc.RpcError as e:
            raise self._error(e) from None

    def _error(self, e: grpc.RpcError) -> RemoteError:
        code = e.code().name if hasattr(e, "code") and e.code() else "UNKNOWN"
        details = e.details() if hasattr(e, "details") else str(e)
        if code == "UNAVAILABLE":
            details = f"labkit-containerd is not reachable at {self.address}: {details}"
        return RemoteError(code, details or code.lower())

    # ---- the calls dockerd makes often

    def version(self) -> str:
        return self.call(self.version_svc.Version, empty_pb2.Empty(), timeout=5).version

    def read_blob(self, digest: str) -> bytes:
        return b"".join(chunk.data for chunk in
                        self.stream(self.content.Read, pb.ReadContentRequest(digest=digest)))


def _accepts(address: str) -> bool:
    """Whether something listens on the unix socket `address` (unix:// or a path)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(address.removeprefix("unix://"))
        return True
    except OSError:
        return False
    finally:
        s.close()


def to_daemon_error(e: RemoteError, not_found: str | None = None) -> DaemonError:
    """The Engine API error for a containerd failure (`not_found` rewords a NOT_FOUND)."""
    if e.code == "NOT_FOUND":
        return NotFound(not_found or e.message)
    if e.code in ("ALREADY_EXISTS", "FAILED_PRECONDITION"):
        return Conflict(e.message)
    if e.code == "INVALID_ARGUMENT":
        return InvalidParameter(e.message)
    return SystemError_(e.message)
