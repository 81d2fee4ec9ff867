"""ShimClient: the Task service of one shim, called from Python (labkit-containerd uses it).

    from labkit.wire.shim.launch import start_shim
    from labkit.wire.shim.client import ShimClient

    address = start_shim(id="c1", namespace="default", bundle=bundle,
                         containerd_address="/run/labkit/containerd/containerd.sock")
    with ShimClient(address) as shim:
        pid = shim.create("c1", bundle, stdout="/run/…/c1-stdout")
        shim.start("c1")
        status, when = shim.wait("c1")         # blocks until the container exits
        shim.delete("c1")
        shim.shutdown()

An exec (`docker exec`) is the same dance with an exec id: shim.exec("c1", "e1", {"args": […],
"cwd": "/", …}, stdout=…), then start/wait/delete with exec_id="e1".

Every call is one ttrpc request on a shared connection; calls may come from several threads at
once (ttrpc multiplexes them by stream id), so a thread can block in `wait` while another
asks for `state`. A failed call raises ShimError(code, message) with the gRPC status code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol, Sequence

from google.protobuf import any_pb2, empty_pb2
from google.protobuf.message import Message

from labkit.wire.shim import task_pb2
from labkit.wire.shim.protocol import (LINUX_RESOURCES_URL, PROCESS_SPEC_URL, RUNC_OPTIONS_URL,
                                       SERVICE, ShimError)
from labkit.wire.ttrpc import Client, Code, RPCError

__all__ = ["ShimClient", "ShimError", "TaskState", "TaskAPI", "RuntimeOptions"]

_STATUS_NAMES = {task_pb2.CREATED: "created", task_pb2.RUNNING: "running",
                 task_pb2.STOPPED: "stopped", task_pb2.PAUSED: "paused",
                 task_pb2.PAUSING: "pausing", task_pb2.UNKNOWN: "unknown"}


class MountLike(Protocol):
    """containerd.types.Mount, or anything with the same fields (a snapshotter's mounts)."""
    type: str
    source: str
    options: Sequence[str]


@dataclass(frozen=True)
class RuntimeOptions:
    """The runtime options Task.Create carries: which OCI runtime the shim runs, and its --root.

    "" means "not said": the shim then uses its default (for root, the namespace is appended by
    the shim, as containerd's runc shim does)."""
    binary_name: str = ""
    root: str = ""


@dataclass
class TaskState:
    id: str
    bundle: str
    pid: int
    status: str                    # "created" | "running" | "stopped"
    exit_status: int
    exited_at: datetime | None     # None until the task has exited


def _time(ts) -> datetime | None:
    """A protobuf Timestamp -> an aware UTC datetime; unset -> None.

    "Unset" is the zero Timestamp, or Go's zero time (year 1, before the epoch), which is what
    containerd's own shim sends for a process that has not exited."""
    if ts.seconds <= 0 and ts.nanos == 0 or ts.seconds < 0:
        return None
    return ts.ToDatetime(tzinfo=timezone.utc)


class TaskAPI(Protocol):
    """L2's Python interface: what containerd asks of a shim, one container at a time.

    ShimClient implements it over the real protocol; a notebook or a student's shim client
    can implement it too, and labkit-containerd only depends on these methods.
    """

    def create(self, id: str, bundle: Path | str, stdin: str = "", stdout: str = "",
               stderr: str = "", terminal: bool = False, *, rootfs: Sequence[MountLike] = (),
               options: RuntimeOptions | None = None) -> int: ...
    def start(self, id: str, *, exec_id: str = "") -> int: ...
    def state(self, id: str, *, exec_id: str = "") -> TaskState: ...
    def wait(self, id: str, timeout: float | None = None, *, exec_id: str = "") -> tuple[int, datetime]: ...
    def kill(self, id: str, signal: int, all: bool = False, *, exec_id: str = "") -> None: ...
    def delete(self, id: str, *, exec_id: str = "") -> tuple[int, int, datetime]: ...
    def exec(self, id: str, exec_id: str, spec: dict, stdin: str = "", stdout: str = "",
             stderr: str = "", terminal: bool = False) -> None: ...
    def pids(self, id: str) -> list[int]: ...
    def pause(self, id: str) -> None: ...
    def resume(self, id: str) -> None: ...
    def update(self, id: str, resources: dict) -> None: ...
    def stats(self, id: str) -> tuple[str, bytes]: ...
    def connect(self) -> dict: ...
    def shutdown(self, now: bool = False) -> None: ...


class ShimClient:
    def __init__(self, address: str, *, timeout: float = 10.0):
        path = address[len("unix://"):] if address.startswith("unix://") else address
        self.address = address
        try:
            self._conn = Client(path, connect_timeout=timeout)
        except OSError as e:
            raise ShimError(Code.UNAVAILABLE, f"cannot connect to shim at {address}: {e.strerror or e}") from None

    def __enter__(self) -> "ShimClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def _call(self, method: str, request: Message, response_type: type[Message],
              timeout: float | None = None) -> Message:
        try:
            payload = self._conn.call(SERVICE, method, request.SerializeToString(), timeout=timeout)
        except RPCError as e:
            raise ShimError(e.code, e.message) from None
        except (ConnectionError, OSError) as e:
            raise ShimError(Code.UNAVAILABLE, f"shim at {self.address}: {e}") from None
        response = response_type()
        response.ParseFromString(payload)
        return response

    # ------------------------------------------------------------- the Task methods

    def create(self, id: str, bundle: Path | str, stdin: str = "", stdout: str = "",
               stderr: str = "", terminal: bool = False, *, rootfs: Sequence[MountLike] = (),
               options: RuntimeOptions | None = None) -> int:
        """Create the task; the shim mounts `rootfs` on <bundle>/rootfs and runs the runtime
        `options` name (sent as containerd.runc.v1.Options, as containerd sends them)."""
        request = task_pb2.CreateTaskRequest(
            id=id, bundle=str(bundle), stdin=stdin, stdout=stdout, stderr=stderr,
            terminal=terminal,
            rootfs=[task_pb2.Mount(type=m.type, source=m.source, target=getattr(m, "target", ""),
                                   options=list(m.options)) for m in rootfs])
        if options is not None:
            runc = task_pb2.RuncOptions(binary_name=options.binary_name, root=options.root)
            request.options.CopyFrom(any_pb2.Any(type_url=RUNC_OPTIONS_URL,
                                                 value=runc.SerializeToString()))
        return self._call("Create", request, task_pb2.CreateTaskResponse).pid

    def exec(self, id: str, exec_id: str, spec: dict, stdin: str = "", stdout: str = "",
             stderr: str = "", terminal: bool = False) -> None:
        """Register an extra process (an OCI `process` object: args, env, cwd …); start() runs it."""
        any_spec = any_pb2.Any(type_url=PROCESS_SPEC_URL, value=json.dumps(spec).encode())
        self._call("Exec", task_pb2.ExecProcessRequest(
            id=id, exec_id=exec_id, spec=any_spec, stdin=stdin, stdout=stdout, stderr=stderr,
            terminal=terminal), empty_pb2.Empty)

    # exec_id="" (the default) means the container's init; otherwise an exec's id.
    def start(self, id: str, *, exec_id: str = "") -> int:
        return self._call("Start", task_pb2.StartRequest(id=id, exec_id=exec_id),
                          task_pb2.StartResponse).pid

    def state(self, id: str, *, exec_id: str = "") -> TaskState:
        r = self._call("State", task_pb2.StateRequest(id=id, exec_id=exec_id), task_pb2.StateResponse)
        return TaskState(id=r.id, bundle=r.bundle, pid=r.pid,
                         status=_STATUS_NAMES.get(r.status, "unknown"),
                         exit_status=r.exit_status, exited_at=_time(r.exited_at))

    def wait(self, id: str, timeout: float | None = None, *, exec_id: str = "") -> tuple[int, datetime]:
        r = self._call("Wait", task_pb2.WaitRequest(id=id, exec_id=exec_id), task_pb2.WaitResponse,
                       timeout)
        return r.exit_status, _time(r.exited_at)

    def kill(self, id: str, signal: int, all: bool = False, *, exec_id: str = "") -> None:
        self._call("Kill", task_pb2.KillRequest(id=id, exec_id=exec_id, signal=int(signal), all=all),
                   empty_pb2.Empty)

    def resize_pty(self, id: str, width: int, height: int, *, exec_id: str = "") -> None:
        self._call("ResizePty", task_pb2.ResizePtyRequest(id=id, exec_id=exec_id, width=width,
                                                          height=height), empty_pb2.Empty)

    def close_io(self, id: str, stdin: bool = True, *, exec_id: str = "") -> None:
        self._call("CloseIO", task_pb2.CloseIORequest(id=id, exec_id=exec_id, stdin=stdin),
                   empty_pb2.Empty)

    def delete(self, id: str, *, exec_id: str = "") -> tuple[int, int, datetime]:
        r = self._call("Delete", task_pb2.DeleteRequest(id=id, exec_id=exec_id), task_pb2.DeleteResponse)
        return r.pid, r.exit_status, _time(r.exited_at)

    def pids(self, id: str) -> list[int]:
        r = self._call("Pids", task_pb2.PidsRequest(id=id), task_pb2.PidsResponse)
        return [p.pid for p in r.processes]

    def pause(self, id: str) -> None:
        """Freeze the task's processes (the runtime's `pause`)."""
        self._call("Pause", task_pb2.PauseRequest(id=id), empty_pb2.Empty)

    def resume(self, id: str) -> None:
        self._call("Resume", task_pb2.ResumeRequest(id=id), empty_pb2.Empty)

    def update(self, id: str, resources: dict) -> None:
        """New limits for the running container: an OCI linux.resources object (memory, cpu,
        pids …), sent as containerd sends it (a JSON Any); the shim runs the runtime's update."""
        request = task_pb2.UpdateTaskRequest(id=id)
        request.resources.CopyFrom(any_pb2.Any(type_url=LINUX_RESOURCES_URL,
                                               value=json.dumps(resources).encode()))
        self._call("Update", request, empty_pb2.Empty)

    def stats(self, id: str) -> tuple[str, bytes]:
        """The container's cgroup numbers, as the shim sends them: (type URL, message bytes),
        io.containerd.cgroups.v1.Metrics or .v2.Metrics (labkit.wire.shim.cgroups_v1_pb2 …)."""
        r = self._call("Stats", task_pb2.StatsRequest(id=id), task_pb2.StatsResponse)
        return r.stats.type_url, r.stats.value

    def connect(self) -> dict:
        r = self._call("Connect", task_pb2.ConnectRequest(), task_pb2.ConnectResponse)
        return {"shim_pid": r.shim_pid, "task_pid": r.task_pid, "version": r.version}

    def shutdown(self, now: bool = False) -> None:
        try:
            self._call("Shutdown", task_pb2.ShutdownRequest(now=now), empty_pb2.Empty)
        except ShimError as e:
            # The shim may close the connection as it exits, before or after answering.
            if e.code != Code.UNAVAILABLE:
                raise
