"""Tasks: a container's running process, owned by a shim.

A *container* is metadata (Containers service); a *task* is what runs. Creating one is
where containerd touches the host. Worked lifecycle, for container "web" in namespace "moby":

    Create  1. bundle  <state>/io.containerd.runtime.v2.task/moby/web/
                         config.json       the container's OCI spec, as the client stored it
                         rootfs/           where the shim mounts the rootfs mounts
                         shim-binary-path  so a restarted containerd knows whom to ask
            2. start the shim:  labkit-shim … -id web start   -> prints its socket address
               (the shim writes <bundle>/address)
            3. shim.Create(rootfs, options)  -> the shim mounts the rootfs (the request's
               mounts, or else the container's snapshot's), records the runtime options
               ({"binary_name": …, "root": …}, the container's, unchanged) in options.json,
               and runs `<runtime> create`; the task is "created", with a pid.
               The same happens under a real containerd: one layer, the shim, mounts.
            4. a watcher thread calls shim.Wait and, when it returns, publishes /tasks/exit
    Start   shim.Start -> `<runtime> start`: the process execs; "running"
    Wait    block until the watcher saw the exit (any number of callers at once)
    Kill    shim.Kill -> `<runtime> kill`
    Pause   shim.Pause -> `<runtime> pause` (the cgroup freezer): "paused"; Resume thaws.
            The shim publishes /tasks/paused and /tasks/resumed (forward.py passes them on).
    Update  shim.Update(resources) -> `<runtime> update --resources -`: new cgroup limits for
            a task that runs (`docker update`); the container's spec is the client's to keep.
    Metrics shim.Stats for each task asked about: the shim reads the cgroup and answers an Any
            (io.containerd.cgroups.v1/v2.Metrics) that containerd passes on unopened.
    Delete  refused while running (FAILED_PRECONDITION); else shim.Delete (`<runtime> delete`),
            shim.Shutdown (the shim exits, having unmounted rootfs/), remove the bundle,
            /tasks/delete.

    Exec    (`docker exec`) shim.Exec registers one more process, an OCI `process` object;
            Start/Get/Kill/Wait take its exec_id; DeleteProcess removes it once it exited.
    CloseIO, ResizePty   stdin EOF and terminal size: the shim holds the stdio, so it is the
            one to ask.

Why a separate shim process at all: containerd can be stopped, upgraded or crash while the
containers keep running, because their parent (and the holder of their stdio) is the shim.
On boot, `recover()` walks the bundles and reconnects to every shim still alive (reading
<bundle>/address), and cleans up after the dead ones with `<shim> … delete` (INTERFACES §4.3).
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from labkit.containerd import mount as mountlib
from labkit.containerd.errors import (AlreadyExists, ContainerdError, FailedPrecondition,
                                      InvalidArgument, NotFound, Unavailable, error_for_code)
from labkit.containerd.events import Exchange
from labkit.containerd.metadata import MetadataStore
from labkit.containerd.mount import Mount
from labkit.containerd.snapshots import Snapshotter
from labkit.wire.shim.client import RuntimeOptions, ShimClient
from labkit.wire.shim.launch import delete_shim, start_shim
from labkit.wire.shim.protocol import ShimError
from labkit.wire.ttrpc import Code

log = logging.getLogger("labkit.containerd.tasks")
shim_log = logging.getLogger("labkit.containerd.shim")

RUNTIME_DIR = "io.containerd.runtime.v2.task"  # containerd's name for the bundles' directory
UNKNOWN_EXIT = 255  # what containerd reports when a shim died without telling us the status


@dataclass
class ProcessInfo:
    """A task as Tasks.Get/List report it."""

    container_id: str
    pid: int
    status: str  # "created" | "running" | "stopped" | "paused" | "unknown"
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    exit_status: int = 0
    exited_at: float | None = None
    exec_id: str = ""


class ShimLog:
    """Reads a shim's log: the fifo <bundle>/log, which the shim opens as its stderr.

    containerd creates this fifo before starting a shim and copies whatever arrives into its
    own log; containerd-shim-runc-v2 even refuses to start without it. We open it read-write,
    so it never reports end-of-file while the shim is between writes, and poll it with select
    so close() can stop the thread.
    """

    def __init__(self, bundle: Path, label: str) -> None:
        path = bundle / "log"
        if not path.exists():
            os.mkfifo(path, 0o600)
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self._label = label
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"log {label}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                return
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                if line.strip():
                    shim_log.info("%s: %s", self._label, line.decode(errors="replace"))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self._fd)


@dataclass
class Proc:
    """One process of a task: its init (exec_id "") or an exec (`docker exec`)."""

    exec_id: str = ""
    pid: int = 0
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    exited: threading.Event = field(default_factory=threading.Event)
    exit_status: int = 0
    exited_at: float | None = None
    # Held while starting, so that /tasks/exit of a process that exits at once can never be
    # published before its /tasks/start (subscribers rely on the order).
    start_lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Task:
    namespace: str
    id: str
    bundle: Path
    address: str
    shim_binary: str
    init: Proc = field(default_factory=Proc)
    execs: dict[str, Proc] = field(default_factory=dict)
    log: ShimLog | None = None
    # Deletes of one task are serialized: dockerd's exit handler and `docker rm` may race,
    # and the second must find the task gone (NOT_FOUND), not a shim that is shutting down.
    delete_lock: threading.Lock = field(default_factory=threading.Lock)

    def proc(self, exec_id: str = "") -> Proc:
        if not exec_id:
            return self.init
        try:
            return self.execs[exec_id]
        except KeyError:
            raise NotFound(f"process {exec_id} of task {self.id}: not found") from None


def _ts(when: datetime | None) -> float | None:
    return when.timestamp() if when is not None else None


class TaskManager:
    """Every task of one labkit-containerd, across namespaces."""

    def __init__(self, state: Path, meta: MetadataStore, exchange: Exchange,
                 shim_binary: str = "labkit-shim", containerd_address: str = "",
                 snapshotter: Callable[[str, str], Snapshotter] | None = None) -> None:
        self.dir = Path(state) / RUNTIME_DIR
        self.snapshotter = snapshotter  # (namespace, name) -> Snapshotter
        self.meta, self.exchange = meta, exchange
        self.shim_binary = shim_binary
        self.containerd_address = containerd_address
        self._tasks: dict[tuple[str, str], Task] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the verbs

    def create(self, ns: str, container_id: str, rootfs: list[Mount], stdin: str = "",
               stdout: str = "", stderr: str = "", terminal: bool = False) -> int:
        container = self.meta.get_container(ns, container_id)
        if not rootfs and container.snapshot_key and self.snapshotter is not None:
            # No mounts given: use the container's own snapshot, as containerd's Go client
            # does in NewTask. (A caller with an absolute root.path in the spec sets no key.)
            rootfs = self.snapshotter(ns, container.snapshotter).mounts(container.snapshot_key)
        options = _runtime_options(container.runtime_options)
        bundle = self.dir / ns / container_id
        with self._lock:
            if (ns, container_id) in self._tasks:
                raise AlreadyExists(f"task {container_id}: already exists")
            try:
                bundle.mkdir(parents=True, exist_ok=False)
            except FileExistsError:
                raise AlreadyExists(f"task {container_id}: bundle {bundle} already exists") \
                    from None
        shim_binary = self.shim_for(container.runtime_name)
        address = ""
        shimlog: ShimLog | None = None
        try:
            self._write_bundle(bundle, container.spec, shim_binary)
            shimlog = ShimLog(bundle, f"{ns}/{container_id}")
            try:
                address = start_shim(shim_binary, id=container_id, namespace=ns,
                                     bundle=bundle, containerd_address=self.containerd_address)
                # The shim mounts the rootfs on <bundle>/rootfs and runs the runtime the
                # options name: both travel in Task.Create, as with a real containerd.
                with ShimClient(address) as shim:
                    pid = shim.create(container_id, bundle, stdin=stdin, stdout=stdout,
                                      stderr=stderr, terminal=terminal, rootfs=rootfs,
                                      options=options)
            except ShimError as e:
                raise _translate(e) from None
        except BaseException:
            self._discard(ns, container_id, bundle, address, shim_binary)
            if shimlog is not None:
                shimlog.close()
            raise
        task = Task(ns, container_id, bundle, address, shim_binary,
                    init=Proc("", pid, stdin, stdout, stderr, terminal), log=shimlog)
        with self._lock:
            self._tasks[(ns, container_id)] = task
        self._watch(task, task.init)
        self.exchange.publish(ns, "/tasks/create", {
            "container_id": container_id, "bundle": str(bundle), "pid": pid,
            "io": {"stdin": stdin, "stdout": stdout, "stderr": stderr, "terminal": terminal},
            "rootfs": [m.__dict__ for m in rootfs]})
        return pid

    def start(self, ns: str, container_id: str, exec_id: str = "") -> int:
        task = self._get(ns, container_id)
        proc = task.proc(exec_id)
        with proc.start_lock:
            pid = self._call(task, lambda s: s.start(container_id, exec_id=exec_id))
            proc.pid = pid
            if exec_id:
                self.exchange.publish(ns, "/tasks/exec-started", {
                    "container_id": container_id, "exec_id": exec_id, "pid": pid})
            else:
                self.exchange.publish(ns, "/tasks/start", {"container_id": container_id,
                                                           "pid": pid})
        return pid

    def get(self, ns: str, container_id: str, exec_id: str = "") -> ProcessInfo:
        task = self._get(ns, container_id)
        proc = task.proc(exec_id)
        st = self._call(task, lambda s: s.state(container_id, exec_id=exec_id))
        return ProcessInfo(container_id, st.pid, st.status, proc.stdin, proc.stdout,
                           proc.stderr, proc.terminal, st.exit_status, _ts(st.exited_at),
                           exec_id=exec_id)

    def exec(self, ns: str, container_id: str, exec_id: str, process: dict, stdin: str = "",
             stdout: str = "", stderr: str = "", terminal: bool = False) -> None:
        """Add a process to a running task (`docker exec`); start() runs it."""
        task = self._get(ns, container_id)
        if not exec_id:
            raise InvalidArgument("exec id must not be empty")
        if not isinstance(process, dict) or not process.get("args"):
            raise InvalidArgument(f"exec {exec_id}: the process spec needs non-empty args")
        with self._lock:
            if exec_id in task.execs:
                raise AlreadyExists(f"exec {exec_id} of task {container_id}: already exists")
            proc = task.execs[exec_id] = Proc(exec_id, 0, stdin, stdout, stderr, terminal)
        try:
            self._call(task, lambda s: s.exec(container_id, exec_id, process, stdin=stdin,
                                              stdout=stdout, stderr=stderr, terminal=terminal))
        except BaseException:
            with self._lock:
                task.execs.pop(exec_id, None)
            raise
        self._watch(task, proc)
        self.exchange.publish(ns, "/tasks/exec-added", {"container_id": container_id,
                                                        "exec_id": exec_id})

    def delete_process(self, ns: str, container_id: str, exec_id: str
                       ) -> tuple[int, int, float | None]:
        """Remove an exited exec process (the task's init is removed by delete())."""
        task = self._get(ns, container_id)
        if not exec_id:
            raise InvalidArgument("delete process: exec id must not be empty (use Delete "
                                  "for the task itself)")
        task.proc(exec_id)
        st = self._call(task, lambda s: s.state(container_id, exec_id=exec_id))
        if st.status in ("running", "paused", "pausing"):
            raise FailedPrecondition(f"exec {exec_id} of task {container_id} is {st.status}")
        pid, status, exited_at = self._call(task, lambda s: s.delete(container_id,
                                                                     exec_id=exec_id))
        with self._lock:
            task.execs.pop(exec_id, None)
        when = _ts(exited_at)
        self.exchange.publish(ns, "/tasks/delete", {
            "container_id": container_id, "id": exec_id, "pid": pid, "exit_status": status,
            "exited_at": when})
        return pid, status, when

    def resize_pty(self, ns: str, container_id: str, width: int, height: int,
                   exec_id: str = "") -> None:
        task = self._get(ns, container_id)
        task.proc(exec_id)
        self._call(task, lambda s: s.resize_pty(container_id, width, height, exec_id=exec_id))

    def close_io(self, ns: str, container_id: str, stdin: bool = True,
                 exec_id: str = "") -> None:
        """Close the process's stdin: the shim holds the fifo open, so only it can give EOF."""
        task = self._get(ns, container_id)
        task.proc(exec_id)
        self._call(task, lambda s: s.close_io(container_id, stdin, exec_id=exec_id))

    def pids(self, ns: str, container_id: str) -> list[int]:
        task = self._get(ns, container_id)
        return self._call(task, lambda s: s.pids(container_id))

    def list(self, ns: str) -> list[ProcessInfo]:
        with self._lock:
            ids = [id for (n, id) in self._tasks if n == ns]
        out = []
        for id in ids:
            try:
                out.append(self.get(ns, id))
            except NotFound:
                pass  # deleted meanwhile
            except ContainerdError as e:
                log.warning("task %s/%s: %s", ns, id, e)
        return out

    def kill(self, ns: str, container_id: str, signal: int, all: bool = False,
             exec_id: str = "") -> None:
        task = self._get(ns, container_id)
        task.proc(exec_id)
        if not 0 < signal < 65:
            raise InvalidArgument(f"invalid signal {signal}")
        self._call(task, lambda s: s.kill(container_id, signal, all, exec_id=exec_id))

    def pause(self, ns: str, container_id: str) -> None:
        task = self._get(ns, container_id)
        self._call(task, lambda s: s.pause(container_id))

    def resume(self, ns: str, container_id: str) -> None:
        task = self._get(ns, container_id)
        self._call(task, lambda s: s.resume(container_id))

    def update(self, ns: str, container_id: str, resources: dict) -> None:
        task = self._get(ns, container_id)
        self._call(task, lambda s: s.update(container_id, resources))

    def metrics(self, ns: str, container_id: str) -> tuple[str, bytes, float]:
        """(type URL, the shim's message, when it was read) for one task."""
        task = self._get(ns, container_id)
        type_url, value = self._call(task, lambda s: s.stats(container_id))
        return type_url, value, time.time()

    def wait(self, ns: str, container_id: str, exec_id: str = "",
             still_wanted: Callable[[], bool] = lambda: True) -> tuple[int, float | None]:
        """Block until the process exits: (exit_status, exited_at). Many waiters may wait at
        once: they share the one shim.Wait call the watcher thread makes."""
        proc = self._get(ns, container_id).proc(exec_id)
        while not proc.exited.wait(0.5):
            if not still_wanted():
                raise FailedPrecondition(f"wait {container_id}: cancelled")
        return proc.exit_status, proc.exited_at

    def has_task(self, ns: str, container_id: str) -> bool:
        with self._lock:
            return (ns, container_id) in self._tasks

    def delete(self, ns: str, container_id: str) -> tuple[int, int, float | None]:
        task = self._get(ns, container_id)
        with task.delete_lock:
            if self._get(ns, container_id) is not task:  # a concurrent delete won
                raise NotFound(f"task {container_id}: not found")
            return self._delete(ns, container_id, task)

    def _delete(self, ns: str, container_id: str, task: Task) -> tuple[int, int, float | None]:
        try:
            st = self._call(task, lambda s: s.state(container_id))
        except Unavailable as e:
            # The shim died under us: nobody can answer for the task any more. Clean up the
            # way a restart would (INTERFACES §4.3) rather than leave it undeletable.
            log.warning("task %s/%s: %s; cleaning up after the dead shim", ns, container_id, e)
            with self._lock:
                self._tasks.pop((ns, container_id), None)
            if task.log is not None:
                task.log.close()
            init = task.init
            self._cleanup_dead(ns, container_id, task.bundle, task.shim_binary,
                               publish_exit=not init.exited.is_set())
            return init.pid, init.exit_status if init.exited.is_set() else UNKNOWN_EXIT, \
                init.exited_at
        if st.status in ("running", "paused", "pausing"):
            raise FailedPrecondition(f"task {container_id} is {st.status}: stop it before "
                                     "deleting it")
        pid, status, exited_at = self._call(task, lambda s: s.delete(container_id))
        try:
            with ShimClient(task.address) as shim:
                shim.shutdown()
        except ShimError as e:
            log.warning("shutdown of shim for %s: %s", container_id, e)
        with self._lock:
            self._tasks.pop((ns, container_id), None)
        if task.log is not None:
            task.log.close()
        self._remove_bundle(task.bundle)
        when = _ts(exited_at)
        self.exchange.publish(ns, "/tasks/delete", {
            "container_id": container_id, "id": container_id, "pid": pid,
            "exit_status": status, "exited_at": when})
        return pid, status, when

    # ------------------------------------------------------------------ restart

    def recover(self) -> None:
        """Reconnect to the shims that survived our restart; clean up after dead ones."""
        if not self.dir.is_dir():
            return
        for ns_dir in sorted(p for p in self.dir.iterdir() if p.is_dir()):
            for bundle in sorted(p for p in ns_dir.iterdir() if p.is_dir()):
                ns, id = ns_dir.name, bundle.name
                if not any(bundle.iterdir()):
                    bundle.rmdir()
                    continue
                shim_binary = _read(bundle / "shim-binary-path") or self.shim_binary
                address = _read(bundle / "address")
                try:
                    if not address:
                        raise ShimError(Code.UNAVAILABLE, "no address file")
                    with ShimClient(address, timeout=2) as shim:
                        shim.connect()
                        st = shim.state(id)
                except ShimError as e:
                    deleted = e.code == Code.NOT_FOUND
                    if deleted:
                        # The shim lives but its task was deleted: we were killed between
                        # the shim's Delete and its Shutdown. Finish the job.
                        log.info("task %s/%s: deleted, its shim still up: shutting it down",
                                 ns, id)
                        self._shutdown_shim(address)
                    else:
                        log.info("task %s/%s: shim is gone (%s): cleaning up", ns, id,
                                 e.message)
                    self._cleanup_dead(ns, id, bundle, shim_binary, publish_exit=not deleted)
                    continue
                task = Task(ns, id, bundle, address, shim_binary, init=Proc("", st.pid),
                            log=ShimLog(bundle, f"{ns}/{id}"))
                with self._lock:
                    self._tasks[(ns, id)] = task
                self._watch(task, task.init)
                log.info("task %s/%s: reconnected to its shim (%s, pid %d)", ns, id,
                         st.status, st.pid)

    # ------------------------------------------------------------------ helpers

    def _cleanup_dead(self, ns: str, id: str, bundle: Path, shim_binary: str, *,
                      publish_exit: bool) -> None:
        """After a dead shim: `<shim> delete` (runtime delete --force, unmount), drop the
        bundle, and tell subscribers the task exited and is gone."""
        try:
            delete_shim(shim_binary, id=id, namespace=ns, bundle=bundle,
                        containerd_address=self.containerd_address)
        except ShimError as e:
            log.warning("task %s/%s: shim delete: %s", ns, id, e.message)
        self._remove_bundle(bundle)
        event = {"container_id": id, "id": id, "pid": 0, "exit_status": UNKNOWN_EXIT,
                 "exited_at": time.time()}
        if publish_exit:
            self.exchange.publish(ns, "/tasks/exit", event)
        self.exchange.publish(ns, "/tasks/delete", event)

    @staticmethod
    def _shutdown_shim(address: str) -> None:
        try:
            with ShimClient(address, timeout=2) as shim:
                shim.shutdown(now=True)
        except ShimError as e:
            log.warning("shutdown of the shim at %s: %s", address, e.message)

    def shim_for(self, runtime_name: str) -> str:
        """The shim binary for a container's runtime name.

        "" and "labkit-shim" mean the shim this daemon was configured with (--shim, which
        may be a student's); "io.containerd.runc.v2" follows containerd's naming rule and
        means the real containerd-shim-runc-v2; anything else is a binary name or path.
        """
        if runtime_name in ("", "labkit-shim"):
            return self.shim_binary
        m = re.fullmatch(r"io\.containerd\.([A-Za-z0-9_-]+)\.(v[0-9]+)", runtime_name)
        if m:
            return f"containerd-shim-{m[1]}-{m[2]}"
        return runtime_name

    def _write_bundle(self, bundle: Path, spec: bytes, shim_binary: str) -> None:
        """config.json is the container's spec exactly as the client stored it (checked once,
        by Containers.Create); the runtime options go to the shim in Task.Create instead."""
        if not spec:
            raise InvalidArgument("container has no OCI spec (spec must be a JSON object)")
        (bundle / "config.json").write_bytes(spec)
        (bundle / "rootfs").mkdir(exist_ok=True)
        (bundle / "shim-binary-path").write_text(shutil.which(shim_binary) or shim_binary)

    def _discard(self, ns: str, id: str, bundle: Path, address: str, shim_binary: str) -> None:
        """Undo a half-made task (create failed somewhere), as containerd does: ask the shim
        to delete and shut down, then run `<shim> delete` in case the runtime left a
        container behind (a shim whose Create failed half-way may not have cleaned up)."""
        if address:
            try:
                with ShimClient(address, timeout=2) as shim:
                    try:
                        shim.delete(id)
                    except ShimError:
                        pass
                    shim.shutdown(now=True)
            except ShimError as e:
                log.warning("task %s/%s: shim shutdown after failed create: %s", ns, id, e.message)
            try:
                delete_shim(shim_binary, id=id, namespace=ns, bundle=bundle,
                            containerd_address=self.containerd_address)
            except ShimError as e:
                log.info("task %s/%s: shim delete after failed create: %s", ns, id, e.message)
        if mountlib.is_mountpoint(str(bundle / "rootfs")):
            mountlib.unmount_all(str(bundle / "rootfs"))   # a shim that died mid-Create
        shutil.rmtree(bundle, ignore_errors=True)

    def _remove_bundle(self, bundle: Path) -> None:
        rootfs = bundle / "rootfs"
        if rootfs.exists():
            mountlib.unmount_all(str(rootfs))
        # Never rmtree through a mount: if rootfs is still mounted, leave the bundle.
        if rootfs.exists() and mountlib.is_mountpoint(str(rootfs)):
            log.error("bundle %s: rootfs is still mounted; leaving it", bundle)
            return
        shutil.rmtree(bundle, ignore_errors=True)

    def _get(self, ns: str, container_id: str) -> Task:
        with self._lock:
            task = self._tasks.get((ns, container_id))
        if task is None:
            raise NotFound(f"task {container_id}: not found")
        return task

    def _call(self, task: Task, fn):
        """One call on a fresh connection to the task's shim; shim errors keep their code."""
        try:
            with ShimClient(task.address) as shim:
                return fn(shim)
        except ShimError as e:
            raise _translate(e) from None

    def _watch(self, task: Task, proc: Proc) -> None:
        """A thread that waits for the process's exit and publishes /tasks/exit."""
        def run() -> None:
            try:
                with ShimClient(task.address) as shim:
                    status, when = shim.wait(task.id, exec_id=proc.exec_id)
                proc.exit_status, proc.exited_at = status, _ts(when)
            except ShimError as e:
                log.warning("task %s/%s: lost its shim (%s)", task.namespace, task.id, e.message)
                proc.exit_status, proc.exited_at = UNKNOWN_EXIT, time.time()
            with proc.start_lock:
                self.exchange.publish(task.namespace, "/tasks/exit", {
                    "container_id": task.id, "id": proc.exec_id or task.id, "pid": proc.pid,
                    "exit_status": proc.exit_status, "exited_at": proc.exited_at})
            proc.exited.set()
        name = f"wait {task.namespace}/{task.id}" + (f"/{proc.exec_id}" if proc.exec_id else "")
        threading.Thread(target=run, name=name, daemon=True).start()


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _runtime_options(options: bytes) -> RuntimeOptions | None:
    """The container's runtime options (JSON, as its client stored them: `{"binary_name": …,
    "root": …}`) for the shim, unchanged; None if there are none. Which runtime, and where its
    binary is, is the client's decision (dockerd's): containerd adds no default of its own."""
    if not options:
        return None
    try:
        opts = json.loads(options)
    except ValueError as e:
        raise InvalidArgument(f"runtime options are not valid JSON: {e}") from None
    if not isinstance(opts, dict):
        raise InvalidArgument("runtime options must be a JSON object")
    return RuntimeOptions(binary_name=str(opts.get("binary_name") or ""),
                          root=str(opts.get("root") or ""))


def _translate(e: ShimError) -> ContainerdError:
    """A ShimError as our own error, with the same status code and the message unchanged."""
    try:
        name = Code(int(e.code)).name
    except (ValueError, TypeError):
        name = "UNKNOWN"
    return error_for_code(name, e.message)

