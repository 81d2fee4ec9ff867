"""The Task service: what labkit-shim answers on its socket (ttrpc, `containerd.task.v2.Task`).

Glossary
    task     a container as a running thing: its init process, its stdio, its exit status
    init     the container's first process (pid 1 inside it), created by `runtime create`
    bundle   the directory holding config.json (and rootfs/); the runtime's working input
    exec     an extra process in a running container (`docker exec`), named by an exec id;
             every method takes an optional exec_id, and "" means the init

One lifecycle, as containerd drives it::

    Create(id, bundle, stdout=fifo…)  runtime create; init paused before execve  -> CREATED, pid
    Start(id)                         runtime start; init execs the command       -> RUNNING
    Wait(id)     (blocks)             the reaper sees the init exit                -> STOPPED, status
    State(id)                         status, pid, exit status, exit time
    Delete(id)                        runtime delete; the task is forgotten        -> pid, status
    Shutdown()                        no task left: the shim exits

and for an exec, while the init runs::

    Exec(id, exec_id, spec, stdio)    remembered, nothing runs yet                 -> CREATED
    Start(id, exec_id)                runtime exec --detach; the process runs      -> RUNNING, pid
    Wait / State / Kill / Delete (id, exec_id)

Errors are gRPC status codes, as containerd expects them: NOT_FOUND for an unknown task or a
process that already exited, FAILED_PRECONDITION for a call in the wrong state, UNKNOWN with
"OCI runtime <verb> failed: <runtime's message>" when the runtime refuses, UNIMPLEMENTED for
what labkit-shim does not do (checkpoints).

    Pause(id) / Resume(id)            runtime pause / resume (the cgroup freezer)  -> PAUSED / RUNNING
    Update(id, resources)             runtime update --resources - (new cgroup limits, `docker update`)
    Stats(id)                         the init's cgroup, read by the shim itself (metrics.py):
                                      an Any holding io.containerd.cgroups.v1/v2.Metrics

Along the way the service tells containerd what happened (/tasks/create, /tasks/start,
/tasks/exit, /tasks/delete, /tasks/exec-added, /tasks/exec-started; see events.py).

The service is the protocol-free core: methods take and return the protobuf messages of
task.proto, so tests and notebooks can call it in-process; main.py puts it on the socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
from datetime import datetime
from collections.abc import Callable

from labkit import __version__
from labkit.shim.events import Publisher
from labkit.shim.log import getLogger
from labkit.shim.reaper import Reaper, become_subreaper
from labkit.shim.rootfs import mount_rootfs, unmount_rootfs
from labkit.shim.runtime import OCIRuntimeError, Runtime, RuntimeOptions, open_runtime
from labkit.shim.stdio import ContainerIO
# The messages of task.proto and events.proto, declared for labkit.wire.protowire: the same
# bytes as the generated task_pb2/events_pb2, without the protobuf runtime (~5 MB per shim).
from labkit.wire.protowire import Message
from labkit.wire.shim import messages
from labkit.wire.shim.protocol import LINUX_RESOURCES_URL, RUNC_OPTIONS_URL, SERVICE, ShimError
from labkit.wire.ttrpc import Code

log = getLogger(__name__)


# labkit's own version string (importlib.metadata would cost the shim ~3 MB of imports)
SHIM_VERSION = "labkit-shim " + __version__


# Substrings by which containerd's shim recognizes a runtime error as "not found"
# (INTERFACES.md §2.1).
_NOT_FOUND_HINTS = ("does not exist", "container not running", "no such process", "not found")


def _runtime_error(verb: str, error: OCIRuntimeError) -> ShimError:
    message = str(error)
    if any(hint in message for hint in _NOT_FOUND_HINTS):
        return ShimError(Code.NOT_FOUND, message)
    return ShimError(Code.UNKNOWN, f"OCI runtime {verb} failed: {message}")


# Process and Task are plain classes, not dataclasses: `dataclasses` imports `inspect` and
# `ast`, about 1.5 MB that every shim -- one per container -- would carry for two records.
class Process:
    """One process the shim answers for: a container's init (exec id "") or an exec."""

    def __init__(self, exec_id: str, io: ContainerIO, spec: dict | None = None):
        self.exec_id = exec_id
        self.io = io
        self.pid = 0
        self.status: int = messages.CREATED
        self.exit_status = 0
        self.exited_at: datetime | None = None
        self.exited = threading.Event()    # set once the exit is recorded (record_exit)
        self.spec = spec                   # an exec's OCI process (config.json's "process" shape)
        self.failure = ""                  # why its exit could not be recorded (Wait says it)

    @property
    def name(self) -> str:
        return f"exec {self.exec_id!r}" if self.exec_id else "init"


class Task:
    """The shim's record of one container: its init, its execs, how to reach its runtime."""

    def __init__(self, id: str, bundle: str, runtime: Runtime, init: Process):
        self.id = id
        self.bundle = bundle
        self.runtime = runtime
        self.init = init
        self.execs: dict[str, Process] = {}
        self.mounted_rootfs = False

    def process(self, exec_id: str) -> Process:
        if not exec_id:
            return self.init
        try:
            return self.execs[exec_id]
        except KeyError:
            raise ShimError(Code.NOT_FOUND, f"exec {exec_id!r} not found in task {self.id!r}") from None


_EXEC_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")   # it becomes part of file names


class TaskService:
    def __init__(self, namespace: str, *, reaper: Reaper | None = None,
                 publisher: Publisher | None = None):
        self.namespace = namespace
        self.events = publisher or Publisher("", namespace)   # default: send nothing
        self.reaper = reaper or Reaper(self._on_exit)
        self._tasks: dict[str, Task] = {}
        self._early_exits: dict[int, tuple[int, datetime]] = {}
        self._lock = threading.Lock()
        self.shutdown_requested = threading.Event()

    # ------------------------------------------------------------- exits (from the reaper)

    def _on_exit(self, pid: int, status: int, when: datetime) -> None:
        with self._lock:
            for task in self._tasks.values():
                for process in (task.init, *task.execs.values()):
                    if process.pid == pid and not process.exited.is_set():
                        self._exited(task, process, status, when)
                        return
            # Create/Start has not recorded the pid yet (the process died at once).
            self._early_exits[pid] = (status, when)

    def _exited(self, task: Task, process: Process, status: int, when: datetime) -> None:
        try:
            self.record_exit(task, process, status, when)
        except Exception as e:
            # Whoever waits for this process must not wait forever: it learns what went wrong.
            log.exception("recording the exit of %s of task %s failed", process.name, task.id)
            process.failure = f"recording the exit of {process.name} failed: {type(e).__name__}: {e}"
            process.status, process.exit_status, process.exited_at = messages.STOPPED, status, when
            process.exited.set()

    def record_exit(self, task: Task, process: Process, status: int, when: datetime) -> None:
        """`process` of `task` exited with `status` at `when` (the reaper saw it): remember it,
        wake whoever waits for it (Task.Wait, Delete), and tell containerd (/tasks/exit)."""
        log.info("task %s: %s (pid %d) exited with status %d", task.id, process.name, process.pid, status)
        # BEGIN SOLUTION chapter="05" hint="messages.TaskExit(container_id, id, pid, exit_status, exited_at); id is the exec id, or the task id for the init"
        # TODO: set the process's status (messages.STOPPED), exit_status and exited_at, then set
        # TODO: its `exited` event; last, publish a TaskExit event with self.events.publish
        # HINT: a Timestamp field is set with exited_at.FromDatetime(when)
        process.status = messages.STOPPED
        process.exit_status = status
        process.exited_at = when
        process.exited.set()
        exit_event = messages.TaskExit(container_id=task.id, id=process.exec_id or task.id,
                                         pid=process.pid, exit_status=status)
        exit_event.exited_at.FromDatetime(when)
        self.events.publish(exit_event)
        # END SOLUTION

    def _started(self, task: Task, process: Process, pid: int) -> None:
        """Record a new pid, catch an exit that came before we knew it, and watch it."""
        with self._lock:
            process.pid = pid
            early = self._early_exits.pop(pid, None)
            if early:
                self._exited(task, process, *early)
        self.reaper.watch(pid)

    def _get(self, id: str) -> Task:
        with self._lock:
            task = self._tasks.get(id)
        if task is None:
            raise ShimError(Code.NOT_FOUND, f"task {id!r} not found in this shim")
        return task

    # ------------------------------------------------------------- the Task methods

    def Create(self, req: messages.CreateTaskRequest) -> messages.CreateTaskResponse:
        if not req.id:
            raise ShimError(Code.INVALID_ARGUMENT, "create: a task id is required")
        # Paths as strings, with os.path: pathlib would cost every shim ~0.8 MB.
        bundle = req.bundle or os.getcwd()
        if not os.path.isfile(os.path.join(bundle, "config.json")):
            raise ShimError(Code.INVALID_ARGUMENT, f"create: bundle {bundle} has no config.json")
        if req.checkpoint:
            raise ShimError(Code.UNIMPLEMENTED, "create: restoring from a checkpoint is not supported")
        try:
            # The runtime the options name (runtime.py): containerd's runc options when the
            # request has them, saved to options.json so that `labkit-shim delete` finds the
            # same runtime later; else the bundle's options.json; else the one default.
            options = RuntimeOptions.from_request(req.options, bundle)
            if req.options.type_url.endswith(RUNC_OPTIONS_URL):
                options.save(bundle)
            runtime = open_runtime(options, self.namespace, bundle)
        except (ValueError, OCIRuntimeError) as e:
            raise ShimError(Code.INVALID_ARGUMENT, f"create: {e}") from None
        with self._lock:
            if req.id in self._tasks:
                raise ShimError(Code.ALREADY_EXISTS, f"create: task {req.id!r} already exists")
        # The container's init must become OUR child when `runtime create` exits and leaves it
        # behind: from here on the shim is a subreaper (reaper.py says why).
        become_subreaper()
        try:
            io = ContainerIO(req.stdin, req.stdout, req.stderr, terminal=req.terminal)
        except (OSError, ValueError) as e:
            raise ShimError(Code.INVALID_ARGUMENT, f"create: {e}") from None
        task = Task(req.id, bundle, runtime, Process("", io))
        pid_file = os.path.join(bundle, "init.pid")
        created = False
        try:
            if req.rootfs:
                mount_rootfs(list(req.rootfs), os.path.join(bundle, "rootfs"))
                task.mounted_rootfs = True
            # While the runtime runs, the reaper must not reap "any child" (reaper.py explains).
            with self.reaper.commands():
                # BEGIN SOLUTION chapter="05" hint="labkit.wire.runtime.Runtime.create(id, bundle, pid_file, stdio=…, console_socket=…) returns the init's pid"
                # TODO: run `runtime create` for req.id in `bundle`, its pid written to pid_file,
                # TODO: the container's stdio being io.container_fds (and io.console's path, if any);
                # TODO: a failure is ShimError(Code.UNKNOWN, "OCI runtime create failed: <message>")
                try:
                    pid = runtime.create(req.id, str(bundle), str(pid_file), stdio=io.container_fds,
                                         console_socket=io.console.path if io.console else None)
                except OCIRuntimeError as e:
                    raise ShimError(Code.UNKNOWN, f"OCI runtime create failed: {e}") from None
                # END SOLUTION
                created = True
                io.started_runtime()
                with self._lock:
                    self._tasks[req.id] = task
                self._started(task, task.init, pid)
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
                unmount_rootfs(os.path.join(bundle, "rootfs"))
            with self._lock:
                if self._tasks.get(req.id) is task:
                    del self._tasks[req.id]
            if isinstance(e, (OSError, ValueError)):
                raise ShimError(Code.UNKNOWN, f"create: {e}") from None
            raise
        log.info("task %s created, init pid %d", req.id, task.init.pid)
        self.events.publish(messages.TaskCreate(
            container_id=req.id, bundle=str(bundle), pid=task.init.pid,
            io=messages.TaskIO(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr,
                                 terminal=req.terminal)))
        return messages.CreateTaskResponse(pid=task.init.pid)

    def Exec(self, req: messages.ExecProcessRequest) -> messages.Empty:
        task = self._get(req.id)
        if not _EXEC_ID.match(req.exec_id):
            raise ShimError(Code.INVALID_ARGUMENT, f"exec: invalid exec id {req.exec_id!r}")
        if task.init.status != messages.RUNNING:
            raise ShimError(Code.FAILED_PRECONDITION, f"exec: task {req.id!r} is not running")
        try:
            spec = json.loads(req.spec.value)
            if not isinstance(spec, dict) or not spec.get("args"):
                raise ValueError("it needs a non-empty \"args\"")
        except ValueError as e:
            raise ShimError(Code.INVALID_ARGUMENT, f"exec: invalid OCI process spec: {e}") from None
        with self._lock:
            if req.exec_id in task.execs:
                raise ShimError(Code.ALREADY_EXISTS, f"exec: {req.exec_id!r} already exists in task {req.id!r}")
            # Reserve the id; the stdio is opened below, outside the lock.
            task.execs[req.exec_id] = None  # type: ignore[assignment]
        try:
            io = ContainerIO(req.stdin, req.stdout, req.stderr, terminal=req.terminal)
        except (OSError, ValueError) as e:
            with self._lock:
                del task.execs[req.exec_id]
            raise ShimError(Code.INVALID_ARGUMENT, f"exec: {e}") from None
        with self._lock:
            task.execs[req.exec_id] = Process(req.exec_id, io, spec=spec)
        self.events.publish(messages.TaskExecAdded(container_id=req.id, exec_id=req.exec_id))
        return messages.Empty()

    def Start(self, req: messages.StartRequest) -> messages.StartResponse:
        task = self._get(req.id)
        process = task.process(req.exec_id)
        if process is None or process.status != messages.CREATED:
            state = messages.Status.Name(process.status).lower() if process else "being set up"
            raise ShimError(Code.FAILED_PRECONDITION,
                            f"start: {process.name if process else 'process'} of task {req.id!r} is {state}, not created")
        if req.exec_id:
            self._start_exec(task, process)
            self.events.publish(messages.TaskExecStarted(container_id=req.id, exec_id=req.exec_id,
                                                           pid=process.pid))
            return messages.StartResponse(pid=process.pid)
        with self.reaper.commands():
            try:
                task.runtime.start(req.id)
            except OCIRuntimeError as e:
                raise _runtime_error("start", e) from None
        with self._lock:
            if process.status == messages.CREATED:
                process.status = messages.RUNNING
        self.events.publish(messages.TaskStart(container_id=req.id, pid=process.pid))
        return messages.StartResponse(pid=process.pid)

    def _start_exec(self, task: Task, process: Process) -> None:
        # The runtime reads the process from a file; it gets the exec's stdio, returns once the
        # process runs (--detach), and leaves it to us, the subreaper, like the init.
        spec_file = os.path.join(task.bundle, f"{process.exec_id}.process.json")
        pid_file = os.path.join(task.bundle, f"{process.exec_id}.pid")
        io = process.io
        try:
            with self.reaper.commands():
                try:
                    pid = task.runtime.exec(task.id, process.spec, str(pid_file), str(spec_file),
                                            stdio=io.container_fds,
                                            console_socket=io.console.path if io.console else None)
                except OCIRuntimeError as e:
                    raise ShimError(Code.UNKNOWN, f"OCI runtime exec failed: {e}") from None
                io.started_runtime()
                with self._lock:
                    process.status = messages.RUNNING
                self._started(task, process, pid)
        except BaseException as e:
            # A failed exec is forgotten (containerd deletes it too).
            io.close()
            with self._lock:
                task.execs.pop(process.exec_id, None)
            if isinstance(e, (OSError, ValueError)):
                raise ShimError(Code.UNKNOWN, f"exec: {e}") from None
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spec_file)

    def State(self, req: messages.StateRequest) -> messages.StateResponse:
        task = self._get(req.id)
        process = self._ready(task, req.exec_id)
        stdin, stdout, stderr = process.io.paths
        resp = messages.StateResponse(id=task.id, bundle=str(task.bundle), pid=process.pid,
                                      status=process.status, stdin=stdin, stdout=stdout,
                                      stderr=stderr, terminal=process.io.terminal,
                                      exit_status=process.exit_status, exec_id=req.exec_id)
        if process.exited_at is not None:
            resp.exited_at.FromDatetime(process.exited_at)
        return resp

    def Wait(self, req: messages.WaitRequest) -> messages.WaitResponse:
        process = self._ready(self._get(req.id), req.exec_id)
        process.exited.wait()    # set by record_exit
        if process.failure:
            raise ShimError(Code.INTERNAL, process.failure)
        resp = messages.WaitResponse(exit_status=process.exit_status)
        resp.exited_at.FromDatetime(process.exited_at)
        return resp

    def Kill(self, req: messages.KillRequest) -> messages.Empty:
        task = self._get(req.id)
        process = self._ready(task, req.exec_id)
        if process.status == messages.STOPPED and not req.all:
            raise ShimError(Code.NOT_FOUND, f"kill: process already finished ({process.name} of task {req.id!r})")
        if req.exec_id:
            if process.status != messages.RUNNING:
                raise ShimError(Code.FAILED_PRECONDITION, f"kill: {process.name} has not started")
            # An exec is our child (adopted) until we reap it, so its pid cannot be reused
            # under us: signal it directly, as containerd's shim does.
            try:
                os.kill(process.pid, req.signal)
            except ProcessLookupError:
                raise ShimError(Code.NOT_FOUND, f"kill: process already finished ({process.name})") from None
            return messages.Empty()
        with self.reaper.commands():
            try:
                task.runtime.kill(req.id, req.signal, all=req.all)
            except OCIRuntimeError as e:
                raise _runtime_error("kill", e) from None
            if req.signal == signal.SIGKILL and task.init.status == messages.PAUSED:
                # A frozen process takes its SIGKILL only once thawed. runc thaws what it
                # kills; crun does not: resume, whichever runtime it is.
                try:
                    task.runtime.resume(req.id)
                except OCIRuntimeError as e:
                    log.info("task %s: resume after SIGKILL: %s", req.id, e)
        return messages.Empty()

    def Pause(self, req: messages.PauseRequest) -> messages.Empty:
        """Freeze the whole container: the runtime's `pause` (its cgroup's freezer)."""
        return self._freeze(req.id, pause=True)

    def Resume(self, req: messages.ResumeRequest) -> messages.Empty:
        return self._freeze(req.id, pause=False)

    def _freeze(self, id: str, pause: bool) -> messages.Empty:
        task = self._get(id)
        verb, needed = ("pause", messages.RUNNING) if pause else ("resume", messages.PAUSED)
        if task.init.status != needed:
            state = messages.Status.Name(task.init.status).lower()
            raise ShimError(Code.FAILED_PRECONDITION, f"{verb}: task {id!r} is {state}")
        try:
            getattr(task.runtime, verb)(id)
        except OCIRuntimeError as e:
            raise _runtime_error(verb, e) from None
        with self._lock:
            if task.init.status == needed:         # (an exit may have been recorded meanwhile)
                task.init.status = messages.PAUSED if pause else messages.RUNNING
        event = (messages.TaskPaused if pause else messages.TaskResumed)(container_id=id)
        self.events.publish(event)
        return messages.Empty()

    def Update(self, req: messages.UpdateTaskRequest) -> messages.Empty:
        """New limits for a running container: the runtime's `update`, which writes them into
        the container's cgroup (and its own state). The resources come as containerd sends
        them: an Any of type LinuxResources holding the OCI linux.resources JSON."""
        task = self._get(req.id)
        if not req.resources.type_url.endswith("LinuxResources"):
            raise ShimError(Code.INVALID_ARGUMENT, f"update: resources of type "
                            f"{req.resources.type_url!r}, expected {LINUX_RESOURCES_URL!r}")
        try:
            resources = json.loads(req.resources.value or b"{}")
        except ValueError as e:
            raise ShimError(Code.INVALID_ARGUMENT, f"update: resources are not JSON: {e}") from None
        if not isinstance(resources, dict):
            raise ShimError(Code.INVALID_ARGUMENT, "update: resources must be a JSON object")
        if task.init.status not in (messages.CREATED, messages.RUNNING, messages.PAUSED):
            raise ShimError(Code.FAILED_PRECONDITION, f"update: task {req.id!r} is not running")
        with self.reaper.commands():
            try:
                task.runtime.update(req.id, resources)
            except OCIRuntimeError as e:
                raise _runtime_error("update", e) from None
        return messages.Empty()

    def Stats(self, req: messages.StatsRequest) -> messages.StatsResponse:
        """The init's cgroup numbers (metrics.py reads them; no runtime command needed)."""
        from labkit.shim import metrics   # (here: procfs and re are for this call only)

        task = self._get(req.id)
        if task.init.status == messages.STOPPED or not task.init.pid:
            raise ShimError(Code.FAILED_PRECONDITION, f"stats: task {req.id!r} is not running")
        try:
            type_url, value = metrics.read(task.init.pid)
        except metrics.NoCgroup as e:
            raise ShimError(Code.NOT_FOUND, f"stats: task {req.id!r}: {e}") from None
        return messages.StatsResponse(stats=messages.Any(type_url=type_url, value=value))

    def Pids(self, req: messages.PidsRequest) -> messages.PidsResponse:
        task = self._get(req.id)
        with self.reaper.commands():
            try:
                pids = task.runtime.ps(req.id)
            except OCIRuntimeError as e:
                if task.init.status == messages.STOPPED or any(h in str(e) for h in _NOT_FOUND_HINTS):
                    raise _runtime_error("ps", e) from None
                # A runtime without `ps` (it is optional): find the processes ourselves.
                log.warning("runtime ps failed (%s); listing the init's pid namespace instead", e)
                from labkit.procfs import pid_namespace_members

                pids = sorted(pid_namespace_members(task.init.pid))
        return messages.PidsResponse(processes=[messages.ProcessInfo(pid=p) for p in pids])

    def ResizePty(self, req: messages.ResizePtyRequest) -> messages.Empty:
        process = self._ready(self._get(req.id), req.exec_id)
        try:
            process.io.resize(req.width, req.height)
        except ValueError as e:
            raise ShimError(Code.FAILED_PRECONDITION, f"resize: {process.name} of task {req.id!r}: {e}") from None
        except OSError as e:
            raise ShimError(Code.UNKNOWN, f"resize: {process.name} of task {req.id!r}: {e.strerror}") from None
        return messages.Empty()

    def CloseIO(self, req: messages.CloseIORequest) -> messages.Empty:
        process = self._ready(self._get(req.id), req.exec_id)
        if req.stdin:
            process.io.close_stdin()
        return messages.Empty()

    def Delete(self, req: messages.DeleteRequest) -> messages.DeleteResponse:
        task = self._get(req.id)
        process = self._ready(task, req.exec_id)
        if process.status == messages.RUNNING:
            raise ShimError(Code.FAILED_PRECONDITION,
                            f"delete: {process.name} of task {req.id!r} is running; kill it first")
        if req.exec_id:
            # An exec that never started just goes; one that ran has been reaped already.
            with self._lock:
                task.execs.pop(req.exec_id, None)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(task.bundle, f"{req.exec_id}.pid"))
        else:
            with self.reaper.commands():
                try:
                    # A created (never started) init is killed by the runtime's delete.
                    task.runtime.delete(req.id)
                except OCIRuntimeError as e:
                    if "does not exist" not in str(e):   # already gone: nothing left to delete
                        raise _runtime_error("delete", e) from None
            if not process.exited.wait(10):
                raise ShimError(Code.UNKNOWN, f"delete: init {process.pid} of task {req.id!r} did not exit")
        if process.pid:
            process.io.wait(2.0)  # let the last output reach the fifos before closing them
        process.io.close()
        if not req.exec_id:
            for other in task.execs.values():
                if other is not None:
                    other.io.close()
            if task.mounted_rootfs:
                unmount_rootfs(os.path.join(task.bundle, "rootfs"))
            with self._lock:
                self._tasks.pop(req.id, None)
        self.reaper.unwatch(process.pid)
        resp = messages.DeleteResponse(pid=process.pid, exit_status=process.exit_status)
        if process.exited_at is not None:
            resp.exited_at.FromDatetime(process.exited_at)
        log.info("task %s: %s deleted", req.id, process.name)
        if not req.exec_id:   # as containerd's runc shim: a delete event for the init only
            deleted = messages.TaskDelete(container_id=req.id, pid=process.pid,
                                            exit_status=process.exit_status)
            deleted.exited_at.CopyFrom(resp.exited_at)
            self.events.publish(deleted)
        return resp

    def Connect(self, req: messages.ConnectRequest) -> messages.ConnectResponse:
        with self._lock:
            task = self._tasks.get(req.id) or next(iter(self._tasks.values()), None)
        return messages.ConnectResponse(shim_pid=os.getpid(), task_pid=task.init.pid if task else 0,
                                        version=SHIM_VERSION)

    def Shutdown(self, req: messages.ShutdownRequest) -> messages.Empty:
        with self._lock:
            remaining = list(self._tasks)
        if remaining and not req.now:
            # As containerd's shim does: a shim with a task left keeps serving it.
            log.info("shutdown ignored: tasks %s remain", ", ".join(remaining))
            return messages.Empty()
        self.shutdown_requested.set()
        return messages.Empty()

    @staticmethod
    def _ready(task: Task, exec_id: str) -> Process:
        process = task.process(exec_id)
        if process is None:
            raise ShimError(Code.FAILED_PRECONDITION, f"exec {exec_id!r} of task {task.id!r} is being set up")
        return process

    # ------------------------------------------------------------- the ttrpc method table

    def handlers(self) -> dict[str, dict[str, Callable[[bytes], bytes]]]:
        """`{service: {method: handler(bytes) -> bytes}}` for ttrpc.Server."""
        methods = {
            "Create": messages.CreateTaskRequest, "Start": messages.StartRequest,
            "State": messages.StateRequest, "Wait": messages.WaitRequest,
            "Kill": messages.KillRequest, "Pids": messages.PidsRequest,
            "Pause": messages.PauseRequest, "Resume": messages.ResumeRequest,
            "CloseIO": messages.CloseIORequest, "ResizePty": messages.ResizePtyRequest,
            "Delete": messages.DeleteRequest, "Exec": messages.ExecProcessRequest,
            "Connect": messages.ConnectRequest, "Shutdown": messages.ShutdownRequest,
            "Update": messages.UpdateTaskRequest, "Stats": messages.StatsRequest,
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
