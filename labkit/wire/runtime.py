"""shim ↔ OCI runtime: drive ANY runc-compatible runtime binary from Python (go-runc's role).

The contract between a shim and its runtime is runc's command line: labkit-runc, runc, crun
and a student's runtime all accept it. This is how the shim (L2) and the tests speak it: one
subprocess per command, exactly the command lines INTERFACES.md §2.1 lists, and errors taken
from the --log file the way containerd's shim does it (the last "error" record written during
the call). It knows runtimes only as programs to run, never as Python code.

    rt = Runtime("/usr/bin/runc", root="/run/labkit/runc/moby")
    pid = rt.create("c1", "/path/bundle", "/path/bundle/init.pid", stdio=(0, out_fd, err_fd))
    rt.start("c1"); rt.state("c1")["status"]   # 'running'
    rt.kill("c1", 15); rt.delete("c1", force=True)

`create` does not wait for the container, only for the runtime process, which exits once
init is waiting; the container keeps the stdio it was given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

# `typing` only for readers and type checkers (they take this constant as True): the shim
# imports this module for the life of its container, and typing costs it ~0.5 MB.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, Protocol

    Stdio = int | IO[Any] | None


class OCIRuntimeError(RuntimeError):
    """A runtime command failed; `message` is the runtime's own error text."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


if TYPE_CHECKING:
    class OCIRuntime(Protocol):
        """The Python interface of L1 (what the shim needs from any runtime)."""

        def create(self, id: str, bundle: str, pid_file: str,
                   stdio: tuple[Stdio, Stdio, Stdio] = (None, None, None),
                   console_socket: str | None = None) -> int: ...
        def start(self, id: str) -> None: ...
        def state(self, id: str) -> dict: ...
        def kill(self, id: str, sig: int | str, all: bool = False) -> None: ...
        def delete(self, id: str, force: bool = False) -> None: ...
        def pause(self, id: str) -> None: ...
        def resume(self, id: str) -> None: ...
        def update(self, id: str, resources: dict) -> None: ...


# crun refuses this lab's cgroup-v1 "hybrid" hosts; it runs through a small program that hides
# the cgroup2 mount from it (on other hosts that program simply execs crun). It is run by its
# command line, as any runtime is: `python -m labkit.runc.v1only CRUN ARGS…`.
V1ONLY = [sys.executable, "-m", "labkit.runc.v1only"]


def runtime_argv(binary: str) -> list[str]:
    """How to invoke `binary` (a path, or a name the system looks up in PATH): itself, or for
    crun, through labkit.runc.v1only (see there for why)."""
    if os.path.basename(binary).startswith("crun"):
        return V1ONLY + [binary]
    return [binary]


class Runtime:
    """One runtime binary with one --root (one containerd namespace, say)."""

    def __init__(self, binary: str, root: str, log: str | None = None,
                 systemd_cgroup: bool = False):
        self.binary = binary
        self.root = root
        # runc keeps one directory per container in root: keep our log file next to it
        self.log = log or root.rstrip("/") + ".log.json"
        self.systemd_cgroup = systemd_cgroup

    # --- plumbing ---------------------------------------------------------------------
    def argv(self, *args: str) -> list[str]:
        argv = runtime_argv(self.binary) + ["--root", self.root, "--log", self.log,
                                            "--log-format", "json"]
        if self.systemd_cgroup:
            argv.append("--systemd-cgroup")
        return argv + list(args)

    def _log_size(self) -> int:
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def _error_since(self, offset: int, stderr: bytes | None, rc: int) -> OCIRuntimeError:
        """The last error record appended to the log after `offset` (else stderr)."""
        message = None
        try:
            with open(self.log, "rb") as f:
                f.seek(offset)
                for line in f.read().decode(errors="replace").splitlines():
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(record, dict) and record.get("level") in ("error", "fatal"):
                        message = str(record.get("msg", ""))
        except OSError:
            pass
        if message is None and stderr:
            message = stderr.decode(errors="replace").strip().splitlines()[-1]
        return OCIRuntimeError(message or f"{self.binary} exited with status {rc}")

    def _run(self, *args: str, stdio: tuple[Stdio, Stdio, Stdio] | None = None,
             capture: bool = True, input: bytes | None = None) -> bytes:
        os.makedirs(os.path.dirname(os.path.abspath(self.log)), exist_ok=True)
        offset = self._log_size()
        try:
            if stdio is not None:
                # create/run: the runtime's stdio becomes the container's, so no pipes
                # here (reading them would wait for the container to exit).
                proc = subprocess.Popen(self.argv(*args), stdin=stdio[0], stdout=stdio[1],
                                        stderr=stdio[2])
                rc, out, err = proc.wait(), b"", None
            else:
                result = subprocess.run(self.argv(*args), capture_output=capture,
                                        **({"input": input} if input is not None
                                           else {"stdin": subprocess.DEVNULL}))
                rc, out, err = result.returncode, result.stdout or b"", result.stderr
        except OSError as e:
            raise OCIRuntimeError(f"cannot run {self.binary}: {e.strerror}") from None
        if rc != 0:
            raise self._error_since(offset, err, rc)
        return out

    # --- the commands -------------------------------------------------------------------
    def create(self, id: str, bundle: str, pid_file: str,
               stdio: tuple[Stdio, Stdio, Stdio] = (None, None, None),
               console_socket: str | None = None, no_pivot: bool = False) -> int:
        """Create the container; return init's host pid (read back from pid_file)."""
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        if no_pivot:
            args.append("--no-pivot")
        self._run(*args, id, stdio=stdio)
        with open(pid_file) as f:
            return int(f.read().strip())

    def start(self, id: str) -> None:
        self._run("start", id)

    def state(self, id: str) -> dict:
        out = self._run("state", id)
        try:
            return json.loads(out)
        except ValueError:
            raise OCIRuntimeError(f"{self.binary} state {id}: not JSON: {out[:200]!r}") from None

    def kill(self, id: str, sig: int | str = 15, all: bool = False) -> None:
        self._run("kill", *(["--all"] if all else []), id, str(sig))

    def delete(self, id: str, force: bool = False) -> None:
        self._run("delete", *(["--force"] if force else []), id)

    def pause(self, id: str) -> None:
        """Freeze every process of the container (its cgroup's freezer)."""
        self._run("pause", id)

    def resume(self, id: str) -> None:
        self._run("resume", id)

    def update(self, id: str, resources: dict) -> None:
        """New cgroup limits for a running container: `update --resources - ID`, the OCI
        linux.resources object on stdin (runc's and crun's form; labkit-runc's too)."""
        self._run("update", "--resources", "-", id, input=json.dumps(resources).encode())

    def exec(self, id: str, process: dict, pid_file: str, process_file: str,
             stdio: tuple[Stdio, Stdio, Stdio] = (None, None, None),
             console_socket: str | None = None) -> int:
        """Start `process` (an OCI process object) in the running container, detached;
        `process_file` is where its JSON is written for the runtime. Returns its pid."""
        with open(process_file, "w") as f:
            json.dump(process, f)
        args = ["exec", "--detach", "--process", process_file, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        self._run(*args, id, stdio=stdio)
        with open(pid_file) as f:
            return int(f.read().strip())

    def ps(self, id: str) -> list[int]:
        """The pids of the container's processes (`ps --format json`; optional in runtimes)."""
        out = self._run("ps", "--format", "json", id)
        try:
            return [int(p) for p in json.loads(out or b"[]") or []]
        except (ValueError, TypeError):
            raise OCIRuntimeError(f"{self.binary} ps {id}: not a JSON list of pids: {out[:200]!r}") from None

    def list(self) -> list[dict]:
        out = self._run("list", "--format", "json")
        return json.loads(out or b"[]") or []

    def version(self) -> str:
        return self._run("--version").decode()
