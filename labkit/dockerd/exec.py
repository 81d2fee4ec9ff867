"""`docker exec`: one more process in a running container (moby's `daemon/exec`).

An exec is not a new container: it joins the namespaces and cgroup of a container's running
task. dockerd records it (create), then asks containerd to add it to the task — Tasks.Exec
with an OCI `process` (args, env, cwd, user, terminal), fifos of its own named
<exec-id>-stdout/-stderr beside the container's — and to start it (Tasks.Start with the
exec id). The runtime's `exec` does the joining (setns). Then, as for a container:

    Tasks.Wait(exec_id) -> record ExitCode -> DeleteProcess (the shim drains and closes the
    fifos) -> end the client's stream -> the client asks GET /exec/{id}/json for ExitCode

The exit code is recorded before the stream ends, because `docker exec` reads it right
after its stream ends, and exits with it.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from labkit.wire.containerd import api_pb2 as pb
from labkit.dockerd import oci, security
from labkit.dockerd.imageconfig import merge_env
from labkit.dockerd.container import Container
from labkit.dockerd.errors import Conflict, InvalidParameter, NotFound, SystemError_
from labkit.dockerd.remote import Containerd, RemoteError
from labkit.stdcopy import STDOUT
from labkit.dockerd.stdio import Attachment, Broadcaster, TaskIO

log = logging.getLogger("labkit.dockerd")


@dataclass
class _Exec:
    """One `docker exec` process: created, then started once, then exited."""

    id: str
    container: Container
    config: dict                  # the request: Cmd, Env, User, WorkingDir, Tty, Attach*
    process: dict                 # the OCI process spec handed to Tasks.Exec
    broadcaster: Broadcaster = field(default_factory=Broadcaster)
    started: bool = False
    running: bool = False
    pid: int = 0
    exit_code: int | None = None
    io: TaskIO | None = None
    stdin_pending: bytearray = field(default_factory=bytearray)  # sent before the start
    stdin_closed: bool = False

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))


class ExecService:
    """The exec processes of all containers; `get_container` is the daemon's lookup."""

    def __init__(self, ctr: Containerd, fifo_root: Path,
                 get_container: Callable[[str], Container]) -> None:
        self.ctr = ctr
        self.fifo_root = fifo_root  # <exec-root>/containerd: one directory per container
        self._get_container = get_container
        self._lock = threading.Lock()
        self._execs: dict[str, _Exec] = {}

    def forget(self, container_id: str) -> None:
        """The container was removed: so are its execs."""
        with self._lock:
            for exec_id in [e.id for e in self._execs.values()
                            if e.container.ID == container_id]:
                del self._execs[exec_id]

    def create(self, ref: str, config: dict) -> str:
        c = self._get_container(ref)
        if not c.State.Running:
            raise Conflict(f"Container {c.ID} is not running")
        if c.State.Paused:
            raise Conflict(f"Container {c.ID} is paused, unpause the container before exec")
        cmd = config.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd or not all(isinstance(a, str) for a in cmd):
            raise InvalidParameter("No exec command specified")
        env = config.get("Env") or []
        if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
            raise InvalidParameter("invalid Env: expected a list of strings")
        if config.get("Privileged"):
            raise InvalidParameter("privileged exec is not supported by labkit-dockerd")
        for key in ("User", "WorkingDir"):
            if config.get(key) is not None and not isinstance(config[key], str):
                raise InvalidParameter(f"invalid {key}: expected a string")
        tty = bool(config.get("Tty"))
        # the container's environment (as its init got it), then the exec's own variables
        base = list(c.Config.get("Env") or [])
        base.append(f"HOSTNAME={c.Config.get('Hostname') or c.ID[:12]}")
        if tty:
            base.append("TERM=xterm")
        console = config.get("ConsoleSize") or [0, 0]
        try:
            process = oci.process_spec(
                args=list(cmd), env=merge_env(base, env),
                cwd=config.get("WorkingDir") or c.Config.get("WorkingDir") or "/",
                user=config.get("User") or c.Config.get("User") or "", tty=tty,
                console_size=(int(console[0]), int(console[1])) if len(console) == 2 else None,
                # as Docker: an exec keeps the container's no_new_privs (its filter too:
                # the runtime loads the container's linux.seccomp for every process)
                no_new_privileges=security.parse(
                    (c.HostConfig or {}).get("SecurityOpt")).no_new_privileges,
                additional_gids=oci.group_ids((c.HostConfig or {}).get("GroupAdd")))
        except (ValueError, TypeError) as e:
            raise InvalidParameter(str(e)) from None
        ex = _Exec(secrets.token_hex(32), c, dict(config, Cmd=list(cmd)), process)
        with self._lock:
            self._execs[ex.id] = ex
        return ex.id

    def _get(self, exec_id: str) -> _Exec:
        with self._lock:
            ex = self._execs.get(exec_id)
        if ex is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return ex

    def start(self, exec_id: str, detach: bool):
        """Start an exec. Detached: start it now (errors are the HTTP answer). Attached:
        return the stream the connection is handed to; the process starts when that stream
        is first read, i.e. AFTER the 101 went out, as in dockerd. (Output written right
        behind the 101 can end up in a client's HTTP read buffer and be lost to it: docker-py
        reads the upgraded socket directly.) A failure to start is then reported IN the
        stream, because the client has already switched protocols."""
        ex = self._get(exec_id)
        c = ex.container
        with self._lock:
            if ex.started:
                raise Conflict(f"Error: Exec command {exec_id} has already run")
            if not c.State.Running:
                raise Conflict(f"Container {c.ID} is not running")
            ex.started = True
        if detach:
            error = self._run(ex)
            if error is not None:
                raise (SystemError_(error.message) if error.code == "UNAVAILABLE"
                       else InvalidParameter(error.message))
            return None
        feed = None
        if ex.config.get("AttachStdin"):
            feed = lambda data: self._stdin(ex, data)  # noqa: E731
        attachment = ex.broadcaster.subscribe(
            ex.tty, bool(ex.config.get("AttachStdout", True)),
            bool(ex.config.get("AttachStderr", True)), feed)
        return _ExecSession(attachment, lambda: self._run(ex),
                            ex.config.get("DetachKeys") or "")

    def _run(self, ex: _Exec) -> RemoteError | None:
        """Tasks.Exec + Tasks.Start with fifos of its own; None, or what went wrong."""
        c = ex.container
        io = TaskIO(self.fifo_root / c.ID, None, ex.tty,
                    bool(ex.config.get("AttachStdin")), ex.broadcaster, prefix=ex.id,
                    end_clients_at_eof=False)
        io.create()
        try:
            self.ctr.call(self.ctr.tasks.Exec, pb.ExecProcessRequest(
                container_id=c.ID, exec_id=ex.id, stdin=io.stdin_path, stdout=io.stdout_path,
                stderr=io.stderr_path, terminal=ex.tty, spec=json.dumps(ex.process).encode()))
            io.start()
            ex.pid = self.ctr.call(self.ctr.tasks.Start, pb.StartRequest(
                container_id=c.ID, exec_id=ex.id), timeout=60).pid
        except RemoteError as e:
            io.abort()
            io.done.wait(2)
            io.cleanup()
            self._delete_process(c, ex)
            lowered = e.message.lower()
            ex.exit_code = 127 if ("not found" in lowered or "no such file" in lowered) else 126
            ex.broadcaster.close_all()
            return e
        with self._lock:
            ex.io, ex.running = io, True
            pending, ex.stdin_pending = bytes(ex.stdin_pending), bytearray()
            close_stdin = ex.stdin_closed
        if pending:
            io.write_stdin(pending)
        if close_stdin:
            self._stdin(ex, None)
        threading.Thread(target=self._monitor, args=(ex, io), daemon=True,
                         name=f"exec-{ex.id[:12]}").start()
        return None

    def _delete_process(self, c: Container, ex: _Exec) -> None:
        try:
            self.ctr.call(self.ctr.tasks.DeleteProcess, pb.DeleteProcessRequest(
                container_id=c.ID, exec_id=ex.id))
        except RemoteError as e:
            log.debug("exec %s: %s", ex.id[:12], e)

    def _monitor(self, ex: _Exec, io: TaskIO) -> None:
        c = ex.container
        try:
            resp = self.ctr.call(self.ctr.tasks.Wait, pb.WaitRequest(
                container_id=c.ID, exec_id=ex.id), timeout=None)
            code = resp.exit_status
        except RemoteError as e:
            log.warning("waiting for exec %s: %s", ex.id[:12], e)
            code = 255
        with self._lock:  # set before the output ends: the CLI inspects right after EOF
            ex.exit_code, ex.running = code, False
        self._delete_process(c, ex)  # the shim drains and closes the exec's fifos
        if not io.done.wait(5):
            io.abort()
            io.done.wait(2)
        io.cleanup()
        ex.broadcaster.close_all()
        with self._lock:
            ex.io = None

    def _stdin(self, ex: _Exec, data: bytes | None) -> None:
        with self._lock:
            io = ex.io
            if io is None:
                if ex.exit_code is None:  # not started yet: keep it for the start
                    if data is None:
                        ex.stdin_closed = True
                    else:
                        ex.stdin_pending += data
                return
        if data is None:
            io.close_stdin()
            try:
                self.ctr.call(self.ctr.tasks.CloseIO, pb.CloseIORequest(
                    container_id=ex.container.ID, exec_id=ex.id, stdin=True))
            except RemoteError as e:
                log.info("closing stdin of exec %s: %s", ex.id[:12], e)
        else:
            io.write_stdin(data)

    def resize(self, exec_id: str, height: int, width: int) -> None:
        ex = self._get(exec_id)
        if not ex.running or not ex.tty:
            return
        try:
            self.ctr.call(self.ctr.tasks.ResizePty, pb.ResizePtyRequest(
                container_id=ex.container.ID, exec_id=ex.id, width=width, height=height))
        except RemoteError as e:
            log.info("resizing exec %s: %s", ex.id[:12], e)

    def inspect(self, exec_id: str) -> dict:
        ex = self._get(exec_id)
        args = ex.process["args"]
        return {
            "ID": ex.id, "Running": ex.running, "ExitCode": ex.exit_code,
            "ProcessConfig": {"tty": ex.tty, "entrypoint": args[0], "arguments": args[1:],
                              "privileged": False, "user": ex.config.get("User") or ""},
            "OpenStdin": bool(ex.config.get("AttachStdin")),
            "OpenStdout": bool(ex.config.get("AttachStdout", True)),
            "OpenStderr": bool(ex.config.get("AttachStderr", True)),
            "CanRemove": False, "ContainerID": ex.container.ID,
            "DetachKeys": ex.config.get("DetachKeys") or "",
            "Pid": ex.pid,
        }


class _ExecSession:
    """An attached exec's stream: starts the process when first read (after the 101),
    then relays its output; a failed start becomes the error text in the stream."""

    def __init__(self, attachment: Attachment, start, detach_keys: str = "") -> None:
        self.tty = attachment.tty
        self.detach_keys = detach_keys  # the exec's DetachKeys ("" : ctrl-p,ctrl-q)
        self.stdin_attached = attachment.stdin_attached
        self._attachment = attachment
        self._start = start

    def output(self) -> Iterator[tuple[int, bytes]]:
        error = self._start()
        if error is not None:
            yield STDOUT, (error.message + "\r\n").encode()
            return
        yield from self._attachment.output()

    def write_stdin(self, data: bytes) -> None:
        self._attachment.write_stdin(data)

    def close_stdin(self) -> None:
        self._attachment.close_stdin()

    def close(self) -> None:
        self._attachment.close()
