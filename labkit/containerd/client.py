"""A typed client for labkit-containerd: one gRPC channel, every service, one namespace.

    from google.protobuf.empty_pb2 import Empty
    from labkit.containerd.client import Client, pb      # pb = labkit.wire.containerd.api_pb2

    with Client("/run/labkit/containerd/containerd.sock", "moby") as c:
        print(c.version.Version(Empty()).version)
        for p in c.transfer.Pull(pb.PullRequest(reference="docker.io/library/busybox:latest",
                                                mirrors=["http://127.0.0.1:5000"])):
            print(p.event, p.desc.digest[:19], p.current, p.total)
        c.images.Get(pb.GetImageRequest(name="docker.io/library/busybox:latest"))

Every call carries the namespace in the metadata key "containerd-namespace", added by a
client interceptor, so callers never forget it (containerd's Go client does the same with
`namespaces.WithNamespace(ctx, "moby")`). Errors arrive as grpc.RpcError; `.code()` is the
status (grpc.StatusCode.NOT_FOUND …) and `.details()` the daemon's message.
"""

from __future__ import annotations

import collections
from pathlib import Path

import grpc

from labkit import paths
from labkit.wire.containerd import api_pb2 as pb
from labkit.wire.containerd import api_pb2_grpc as rpc

NAMESPACE_KEY = "containerd-namespace"
LEASE_KEY = "containerd-lease"   # metadata=[(LEASE_KEY, id)] makes a call under a lease

__all__ = ["Client", "namespaced_channel", "pb", "NAMESPACE_KEY", "LEASE_KEY"]


class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                         "compression")), grpc.ClientCallDetails):
    pass


class _Namespace(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                 grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds ("containerd-namespace", ns) to the metadata of every call."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def _details(self, d: grpc.ClientCallDetails) -> _CallDetails:
        metadata = list(d.metadata or []) + [(NAMESPACE_KEY, self.namespace)]
        return _CallDetails(d.method, d.timeout, metadata, d.credentials,
                            getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def target_for(address: str | Path) -> str:
    """"/run/x.sock" or "unix:///run/x.sock" -> the gRPC target "unix:///run/x.sock"."""
    address = str(address)
    if address.startswith("unix:"):
        return address
    return "unix://" + address


# A local socket, and a daemon that may restart: reconnect within a second of its return,
# rather than after gRPC's default backoff (1 s, growing 1.6-fold up to 2 minutes).
RECONNECT = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
             ("grpc.max_reconnect_backoff_ms", 1000)]


def namespaced_channel(address: str | Path, namespace: str) -> tuple[grpc.Channel, grpc.Channel]:
    """(raw, namespaced): a channel to `address` and the same channel adding the namespace to
    every call. Any gRPC API that reads "containerd-namespace" can use it: labkit-ctr speaks
    containerd's real services over one (labkit.wire.containerd_real)."""
    raw = grpc.insecure_channel(target_for(address), options=RECONNECT)
    return raw, grpc.intercept_channel(raw, _Namespace(namespace))


class Client:
    """The stubs of every labkit-containerd service, bound to one namespace."""

    def __init__(self, address: str | Path = paths.CONTAINERD_SOCK,
                 namespace: str = paths.NAMESPACE) -> None:
        if not namespace:
            raise ValueError("namespace must not be empty")
        self.address, self.namespace = str(address), namespace
        self._raw, self.channel = namespaced_channel(address, namespace)
        self.version: rpc.VersionStub = rpc.VersionStub(self.channel)
        self.content: rpc.ContentStub = rpc.ContentStub(self.channel)
        self.images: rpc.ImagesStub = rpc.ImagesStub(self.channel)
        self.transfer: rpc.TransferStub = rpc.TransferStub(self.channel)
        self.snapshots: rpc.SnapshotsStub = rpc.SnapshotsStub(self.channel)
        self.containers: rpc.ContainersStub = rpc.ContainersStub(self.channel)
        self.tasks: rpc.TasksStub = rpc.TasksStub(self.channel)
        self.events: rpc.EventsStub = rpc.EventsStub(self.channel)
        self.leases: rpc.LeasesStub = rpc.LeasesStub(self.channel)
        self.diff: rpc.DiffStub = rpc.DiffStub(self.channel)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the daemon accepts connections (grpc.FutureTimeoutError if not)."""
        grpc.channel_ready_future(self._raw).result(timeout=timeout)

    def read_content(self, digest: str) -> bytes:
        """A whole blob from the content store (manifests and configs are small)."""
        return b"".join(r.data for r in self.content.Read(pb.ReadContentRequest(digest=digest)))

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
