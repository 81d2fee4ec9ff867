"""The errors labkit-containerd's modules raise, one per gRPC status code they map to.

Every module below the gRPC server (content store, snapshotter, metadata, tasks, pull) raises
these plain Python exceptions; only `server.py` knows about gRPC, and it turns each one into
the status code of the same name. containerd does the same with its `errdefs` package:
`errdefs.ErrNotFound` inside, `codes.NotFound` on the wire, and back again in the client.
So a caller (labkit-dockerd) can branch on the code: NOT_FOUND on a missing image is what
drives `docker run`'s pull-on-create.
"""

from __future__ import annotations


class ContainerdError(Exception):
    """Base class. `code` is the name of the gRPC status code (grpc.StatusCode member)."""

    code = "UNKNOWN"


class NotFound(ContainerdError):
    code = "NOT_FOUND"


class AlreadyExists(ContainerdError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(ContainerdError):
    """The object exists but is in the wrong state (a running task, a snapshot with children)."""

    code = "FAILED_PRECONDITION"


class InvalidArgument(ContainerdError):
    code = "INVALID_ARGUMENT"


class OutOfRange(ContainerdError):
    """An offset past where it may be (a Content.Write not at the ingest's offset)."""

    code = "OUT_OF_RANGE"


class Unavailable(ContainerdError):
    """Something we depend on does not answer (a registry, a shim)."""

    code = "UNAVAILABLE"


class Internal(ContainerdError):
    code = "INTERNAL"


def error_for_code(code: str, message: str) -> ContainerdError:
    """An error carrying gRPC status `code` (a name such as "NOT_FOUND"), message unchanged.

    Used to pass a shim's error through to our own caller without rewording it: the text
    "OCI runtime create failed: … executable file not found in $PATH" is what decides
    `docker run`'s exit status (127), so it must arrive intact.
    """
    for cls in (NotFound, AlreadyExists, FailedPrecondition, InvalidArgument, OutOfRange,
                Unavailable, Internal):
        if cls.code == code:
            return cls(message)
    err = ContainerdError(message)
    err.code = code
    return err
