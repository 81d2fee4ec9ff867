"""The Task service: what labkit-shim answers on its socket (ttrpc, `containerd.task.v2.Task`).

Glossary
    task     a container as a running thing: its init process, its stdio, its exit status
    init     the container's first process (pid 1 inside it), created by `runtime create`
    bundle   the directory holding config.json (and rootfs/); the runtime's working input
    exec     an extra process in a running container (`docker exec`) — not implemented here

One lifecycle, as containerd drives it::

    Create(id, bundle, stdout=fifo…)  runtime create; init paused before execve  -> CREATED, pid
    Start(id)                         runtime start; init execs the command       -> RUNNING
    Wait(id)     (blocks)             the reaper sees the init exit                -> STOPPED, status
    State(id)                         status, pid, exit status, exit time
    Delete(id)                        runtime delete; the task is forgotten        -> pid, status
    Shutdown()                        no task left: the shim exits

Errors are gRPC status codes, as containerd expects them: NOT_FOUND for an unknown task or a
process that already exited, FAILED_PRECONDITION for a call in the wrong state, UNKNOWN with
"OCI runtime <verb> failed: <runtime's message>" when the runtime refuses, UNIMPLEMENTED for
what labkit-shim does not do (exec, pause, checkpoints, stats).

The service is the protocol-free core: methods take and return the protobuf messages of
task.proto, so tests and notebooks can call it in-process; main.py puts it on the socket.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from google.protobuf import empty_pb2
from google.protobuf.message import Message

from labkit.shim import task_pb2
from labkit.shim.reaper import Reaper
from labkit.shim.rootfs import mount_rootfs, unmount_rootfs
from labkit.shim.runtime import OCIRuntimeError, Runtime, RuntimeOptions, resolve_binary
from labkit.shim.stdio import ContainerIO
from labkit.shim.ttrpc import Code, RPCError

log = logging.getLogger(__name__)


def _package_version() -> str:
    try:
        return importlib.metadata.version("labkit")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"

SERVICE = "containerd.task.v2.Task"
SHIM_VERSION = "labkit-shim " + _package_version()


class ShimError(RPCError):
    """An error the shim returns: a gRPC status code and a message (see ttrpc.Code)."""


# Substrings by which containerd's shim recognizes a runtime error as "not found"
# (INTERFACES.md §2.1).
_NOT_FOUND_HINTS = ("does not exist", "container not running", "no such process", "not found")


def _runtime_error(verb: str, error: OCIRuntimeError) -> ShimError:
    message = str(error)
    if any(hint in message for hint in _NOT_FOUND_HINTS):
        return ShimError(Code.NOT_FOUND, message)
    return ShimError(Code.UNKNOWN, f"OCI runtime {verb} failed: {message}")


def _pid_namespace_members(init_pid: int) -> list[int]:
    """Host pids of the processes in the same pid namespace as `init_pid` (man 7 pid_namespaces)."""
    try:
        target = os.readlink(f"/proc/{init_pid}/ns/pid")
    except OSError:
        return []
    if target == os.readlink("/proc/self/ns/pid"):
        return [init_pid]   # the host's own pid namespace: no way to tell the container's processes
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == target:
                    members.append(int(entry))
            except OSError:
                continue    # exited while we looked
    return sorted(members)


@dataclass
class Task:
    """The shim's record of one container's init process."""
    id: str
    bundle: Path
    runtime: Runtime
    io: ContainerIO
    pid: int = 0
    status: int = task_pb2.CREATED
    exit_status: int = 0
    exited_at: datetime | None = None
    exited: threading.Event = field(default_factory=threading.Event)
    mounted_rootfs: bool = False


class TaskService:
    def __init__(self, namespace: str, *, reaper: Reaper | None = None):
        self.namespace = namespace
        self.reaper = reaper or Reaper(self._on_exit)
        self._tasks: dict[str, Task] = {}
        self._early_exits: dict[int, tuple[int, datetime]] = {}
        self._lock = threading.Lock()
        self.shutdown_requested = threading.Event()

    # ------------------------------------------------------------- exits (from the reaper)

    def _on_exit(self, pid: int, status: int, when: datetime) -> None:
        with self._lock:
            task = next((t for t in self._tasks.values() if t.pid == pid), None)
            if task is None:
                # Create has not recorded the pid yet (the init died right after create).
                self._early_exits[pid] = (status, when)
                return
            self._record_exit(task, status, when)

    def _record_exit(self, task: Task, status: int, when: datetime) -> None:
        log.info("task %s: init %d exited with status %d", task.id, task.pid, status)
        task.status = task_pb2.STOPPED
        task.exit_status = status
        task.exited_at = when
        task.exited.set()

    def _get(self, id: str) -> Task:
        with self._lock:
            task = self._tasks.get(id)
        if task is None:
            raise ShimError(Code.NOT_FOUND, f"task {id!r} not found in this shim")
        return task

    # ------------------------------------------------------------- the Task methods

    def Create(self, req: task_pb2.CreateTaskRequest) -> task_pb2.CreateTaskResponse:
        if not req.id:
            raise ShimError(Code.INVALID_ARGUMENT, "create: a task id is required")
        bundle = Path(req.bundle or os.getcwd())
        if not (bundle / "config.json").is_file():
            raise ShimError(Code.INVALID_ARGUMENT, f"create: bundle {bundle} has no config.json")
        if req.checkpoint:
            raise ShimError(Code.UNIMPLEMENTED, "create: restoring from a checkpoint is not supported")
        try:
            options = RuntimeOptions.load(bundle)
            if req.options.type_url.endswith("runc.v1.Options"):
                # containerd's way of naming the runtime: it wins over options.json, and is saved
                # there so that `labkit-shim delete` finds the same runtime later.
                runc = task_pb2.RuncOptions.FromString(req.options.value)
                options = RuntimeOptions(binary=runc.binary_name or options.binary,
                                         root=Path(runc.root) if runc.root else options.root)
                options.save(bundle)
            resolve_binary(options.binary)
        except (ValueError, OCIRuntimeError) as e:
            raise ShimError(Code.INVALID_ARGUMENT, f"create: {e}") from None
        runtime = Runtime(options.binary, options.root / self.namespace, bundle / "log.json")
        with self._lock:
            if req.id in self._tasks:
                raise ShimError(Code.ALREADY_EXISTS, f"create: task {req.id!r} already exists")
        try:
            io = ContainerIO(req.stdin, req.stdout, req.stderr, terminal=req.terminal)
        except (OSError, ValueError) as e:
            raise ShimError(Code.INVALID_ARGUMENT, f"create: {e}") from None
        task = Task(req.id, bundle, runtime, io)
        pid_file = bundle / "init.pid"
        created = False
        try:
            if req.rootfs:
                mount_rootfs(list(req.rootfs), bundle / "rootfs")
                task.mounted_rootfs = True
            # While the runtime runs, the reaper must not reap "any child" (reaper.py explains).
            with self.reaper.commands():
                try:
                    runtime.create(req.id, bundle, pid_file, stdin=io.container_fds[0],
                                   stdout=io.container_fds[1], stderr=io.container_fds[2],
                                   console_socket=io.console.path if io.console else None)
                except OCIRuntimeError as e:
                    raise ShimError(Code.UNKNOWN, f"OCI runtime create failed: {e}") from None
                created = True
                io.started_runtime()
                task.pid = int(pid_file.read_text().strip())
                with self._lock:
                    self._tasks[req.id] = task
                    early = self._early_exits.pop(task.pid, None)
                    if early:
                        self._record_exit(task, *early)
                self.reaper.watch(task.pid)
        except BaseException as e:
            if not isinstance(e, ShimError):
                log.exception("create %s failed", req.id)
            io.close()
            if created:   # the runtime made a container we cannot use: remove it
                with self.reaper.commands():
                    try:
                        runtime.delete(req.id, force=True)
                    except OCIRuntimeError as delete_error:
                        log.warning("cleaning up %s: %s", req.id, delete_error)
            if task.mounted_rootfs:
                unmount_rootfs(bundle / "rootfs")
            with self._lock:
                if self._tasks.get(req.id) is task:
                    del self._tasks[req.id]
            if isinstance(e, (OSError, ValueError)):
                raise ShimError(Code.UNKNOWN, f"create: {e}") from None
            raise
        log.info("task %s created, init pid %d", req.id, task.pid)
        return task_pb2.CreateTaskResponse(pid=task.pid)

    def Start(self, req: task_pb2.StartRequest) -> task_pb2.StartResponse:
        self._no_exec(req.exec_id)
        task = self._get(req.id)
        if task.status != task_pb2.CREATED:
            raise ShimError(Code.FAILED_PRECONDITION,
                            f"start: task {req.id!r} is {task_pb2.Status.Name(task.status).lower()}, not created")
        with self.reaper.commands():
            try:
                task.runtime.start(req.id)
            except OCIRuntimeError as e:
                raise _runtime_error("start", e) from None
        with self._lock:
            if task.status == task_pb2.CREATED:
                task.status = task_pb2.RUNNING
        return task_pb2.StartResponse(pid=task.pid)

    def State(self, req: task_pb2.StateRequest) -> task_pb2.StateResponse:
        self._no_exec(req.exec_id)
        task = self._get(req.id)
        stdin, stdout, stderr = task.io.paths
        resp = task_pb2.StateResponse(id=task.id, bundle=str(task.bundle), pid=task.pid,
                                      status=task.status, stdin=stdin, stdout=stdout,
                                      stderr=stderr, terminal=task.io.terminal,
                                      exit_status=task.exit_status)
        if task.exited_at is not None:
            resp.exited_at.FromDatetime(task.exited_at)
        return resp

    def Wait(self, req: task_pb2.WaitRequest) -> task_pb2.WaitResponse:
        self._no_exec(req.exec_id)
        task = self._get(req.id)
        task.exited.wait()
        resp = task_pb2.WaitResponse(exit_status=task.exit_status)
        resp.exited_at.FromDatetime(task.exited_at)
        return resp

    def Kill(self, req: task_pb2.KillRequest) -> empty_pb2.Empty:
        self._no_exec(req.exec_id)
        task = self._get(req.id)
        if task.status == task_pb2.STOPPED and not req.all:
            raise ShimError(Code.NOT_FOUND, f"kill: process already finished (task {req.id!r} is stopped)")
        with self.reaper.commands():
            try:
                task.runtime.kill(req.id, req.signal, all=req.all)
            except OCIRuntimeError as e:
                raise _runtime_error("kill", e) from None
        return empty_pb2.Empty()

    def Pids(self, req: task_pb2.PidsRequest) -> task_pb2.PidsResponse:
        task = self._get(req.id)
        with self.reaper.commands():
            try:
                pids = task.runtime.ps(req.id)
            except OCIRuntimeError as e:
                if task.status == task_pb2.STOPPED or any(h in str(e) for h in _NOT_FOUND_HINTS):
                    raise _runtime_error("ps", e) from None
                # A runtime without `ps` (it is optional): find the processes ourselves.
                log.warning("runtime ps failed (%s); listing the init's pid namespace instead", e)
                pids = _pid_namespace_members(task.pid)
        return task_pb2.PidsResponse(processes=[task_pb2.ProcessInfo(pid=p) for p in pids])

    def ResizePty(self, req: task_pb2.ResizePtyRequest) -> empty_pb2.Empty:
        self._no_exec(req.exec_id)
        task = self._get(req.id)
        try:
            task.io.resize(req.width, req.height)
        except ValueError as e:
            raise ShimError(Code.FAILED_PRECONDITION, f"resize: task {req.id!r}: {e}") from None
        except OSError as e:
            raise ShimError(Code.UNKNOWN, f"resize: task {req.id!r}: {e.strerror}") from None
        return empty_pb2.Empty()

    def CloseIO(self, req: task_pb2.CloseIORequest) -> empty_pb2.Empty:
        self._no_exec(req.exec_id)
        task = self._get(req.id)
        if req.stdin:
            task.io.close_stdin()
        return empty_pb2.Empty()

    def Delete(self, req: task_pb2.DeleteRequest) -> task_pb2.DeleteResponse:
        self._no_exec(req.exec_id)
        task = self._get(req.id)
        if task.status == task_pb2.RUNNING:
            raise ShimError(Code.FAILED_PRECONDITION,
                            f"delete: task {req.id!r} is running; kill it first")
        with self.reaper.commands():
            try:
                # A created (never started) init is killed by the runtime's delete.
                task.runtime.delete(req.id)
            except OCIRuntimeError as e:
                if "does not exist" not in str(e):   # already gone: nothing left to delete
                    raise _runtime_error("delete", e) from None
        if not task.exited.wait(10):
            raise ShimError(Code.UNKNOWN, f"delete: init {task.pid} of task {req.id!r} did not exit")
        task.io.wait(2.0)  # let the last output reach the fifos before closing them
        task.io.close()
        if task.mounted_rootfs:
            unmount_rootfs(task.bundle / "rootfs")
        with self._lock:
            self._tasks.pop(req.id, None)
        self.reaper.unwatch(task.pid)
        resp = task_pb2.DeleteResponse(pid=task.pid, exit_status=task.exit_status)
        resp.exited_at.FromDatetime(task.exited_at)
        log.info("task %s deleted", req.id)
        return resp

    def Connect(self, req: task_pb2.ConnectRequest) -> task_pb2.ConnectResponse:
        with self._lock:
            task = self._tasks.get(req.id) or next(iter(self._tasks.values()), None)
        return task_pb2.ConnectResponse(shim_pid=os.getpid(), task_pid=task.pid if task else 0,
                                        version=SHIM_VERSION)

    def Shutdown(self, req: task_pb2.ShutdownRequest) -> empty_pb2.Empty:
        with self._lock:
            remaining = list(self._tasks)
        if remaining and not req.now:
            # As containerd's shim does: a shim with a task left keeps serving it.
            log.info("shutdown ignored: tasks %s remain", ", ".join(remaining))
            return empty_pb2.Empty()
        self.shutdown_requested.set()
        return empty_pb2.Empty()

    @staticmethod
    def _no_exec(exec_id: str) -> None:
        if exec_id:
            raise ShimError(Code.UNIMPLEMENTED, f"exec processes ({exec_id!r}) are not supported by labkit-shim")

    # ------------------------------------------------------------- the ttrpc method table

    def handlers(self) -> dict[str, dict[str, Callable[[bytes], bytes]]]:
        """`{service: {method: handler(bytes) -> bytes}}` for ttrpc.Server."""
        methods = {
            "Create": task_pb2.CreateTaskRequest, "Start": task_pb2.StartRequest,
            "State": task_pb2.StateRequest, "Wait": task_pb2.WaitRequest,
            "Kill": task_pb2.KillRequest, "Pids": task_pb2.PidsRequest,
            "CloseIO": task_pb2.CloseIORequest, "ResizePty": task_pb2.ResizePtyRequest,
            "Delete": task_pb2.DeleteRequest,
            "Connect": task_pb2.ConnectRequest, "Shutdown": task_pb2.ShutdownRequest,
        }
        return {SERVICE: {name: self._handler(getattr(self, name), request_type)
                          for name, request_type in methods.items()}}

    @staticmethod
    def _handler(method: Callable[[Message], Message], request_type: type[Message]):
        def handle(payload: bytes) -> bytes:
            request = request_type()
            try:
                request.ParseFromString(payload)
            except Exception as e:
                raise ShimError(Code.INVALID_ARGUMENT, f"undecodable {request_type.__name__}: {e}") from None
            return method(request).SerializeToString()
        return handle
