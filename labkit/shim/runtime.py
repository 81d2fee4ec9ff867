"""How the shim runs the OCI runtime: runc's command line, for labkit-runc, runc, crun or a path.

Every call has the form containerd's runc shim uses (INTERFACES.md §2.1)::

    <runtime> --root <root>/<namespace> --log <bundle>/log.json --log-format json <verb> …

The runtime is a short-lived command: `create` sets the container up and exits, leaving the
container's init paused before execve (and reparented to the shim, the subreaper); `start`
lets it go; `state`, `kill`, `ps`, `delete` each do one thing and exit. When a command fails,
the runtime appends `{"level":"error","msg":…}` lines to the --log file and exits non-zero; the
last error line is the message that travels up to the user, as
"OCI runtime create failed: <msg>".

Which runtime: the bundle's options.json, written in the shape containerd's runc shim uses,
`{"binary_name": "runc", "root": "/run/docker/runtime-runc"}`. As in containerd, the namespace
is appended to the root, so a real dockerd's containers live under
/run/docker/runtime-runc/moby.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from labkit import paths

DEFAULT_BINARY = "labkit-runc"


class OCIRuntimeError(Exception):
    """A runtime command failed; the message is the runtime's own last error line."""


@dataclass(frozen=True)
class RuntimeOptions:
    binary: str = DEFAULT_BINARY   # a name looked up in PATH, or a path
    root: Path = paths.RUNTIME_ROOT  # the namespace is appended to it

    @classmethod
    def load(cls, bundle: Path) -> "RuntimeOptions":
        """Read <bundle>/options.json if there is one; its absence means the defaults."""
        path = bundle / "options.json"
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read runtime options {path}: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"runtime options {path} must hold a JSON object, not {type(data).__name__}")
        return cls(binary=data.get("binary_name") or DEFAULT_BINARY,
                   root=Path(data.get("root") or paths.RUNTIME_ROOT))


    def save(self, bundle: Path) -> None:
        """Write <bundle>/options.json, as containerd's runc shim records the options it got."""
        (bundle / "options.json").write_text(json.dumps({"binary_name": self.binary,
                                                         "root": str(self.root)}))


def resolve_binary(binary: str) -> str:
    """A runtime name or path -> the path to execute."""
    if "/" in binary:
        if not os.access(binary, os.X_OK):
            raise OCIRuntimeError(f"runtime binary {binary} is not an executable file")
        return binary
    found = shutil.which(binary)
    if found is None:
        # labkit's own commands sit next to the interpreter (the lab's virtualenv), which may not
        # be on the PATH of whoever started the shim.
        candidate = Path(sys.executable).parent / binary
        if candidate.exists():
            return str(candidate)
        raise OCIRuntimeError(f"runtime binary {binary!r} not found in PATH")
    return found


def runtime_argv(binary: str) -> list[str]:
    """The command that runs `binary`; labkit.runc.binary knows how to run crun on this host."""
    try:
        from labkit.runc.binary import runtime_argv as runc_runtime_argv
    except ImportError:
        return [resolve_binary(binary)]
    return runc_runtime_argv(binary)


def last_log_error(log_path: Path, offset: int = 0) -> str | None:
    """The msg of the last error line the runtime appended to its --log after `offset`."""
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    message = None
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal") and entry.get("msg"):
            message = str(entry["msg"])
    return message


class Runtime:
    """One runtime binary, one --root, one --log: the verbs the shim needs."""

    def __init__(self, binary: str, root: Path, log: Path):
        self.binary = binary
        self.root = Path(root)
        self.log = Path(log)

    def _argv(self, *args: str) -> list[str]:
        return [*runtime_argv(self.binary), "--root", str(self.root), "--log", str(self.log),
                "--log-format", "json", *args]

    def _run(self, *args: str, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
             stderr=subprocess.PIPE, cwd: Path | None = None) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            offset = self.log.stat().st_size
        except OSError:
            offset = 0
        argv = self._argv(*args)
        try:
            proc = subprocess.run(argv, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd)
        except OSError as e:
            raise OCIRuntimeError(f"cannot run {argv[0]}: {e.strerror}") from None
        if proc.returncode != 0:
            message = last_log_error(self.log, offset)
            if message is None:
                # No log line: fall back to what the runtime printed, if we captured it.
                captured = proc.stderr if isinstance(proc.stderr, bytes) else b""
                lines = captured.decode(errors="replace").strip().splitlines()
                message = lines[-1] if lines else f"{args[0]} exited with status {proc.returncode}"
            raise OCIRuntimeError(message)
        return proc.stdout.decode(errors="replace") if isinstance(proc.stdout, bytes) else ""

    # The runtime's own stdio is what the container inherits (INTERFACES.md §2.2), so create
    # is given the container's stdio and nothing of the runtime's output can be captured: its
    # errors come only from the --log file.
    def create(self, id: str, bundle: Path, pid_file: Path, *, stdin: int, stdout: int,
               stderr: int, console_socket: str | None = None) -> None:
        console = ["--console-socket", console_socket] if console_socket else []
        self._run("create", "--bundle", str(bundle), "--pid-file", str(pid_file), *console, id,
                  stdin=stdin, stdout=stdout, stderr=stderr, cwd=bundle)

    def start(self, id: str) -> None:
        self._run("start", id)

    def state(self, id: str) -> dict:
        return json.loads(self._run("state", id))

    def kill(self, id: str, sig: int, *, all: bool = False) -> None:
        self._run("kill", *(["--all"] if all else []), id, str(int(sig)))

    def delete(self, id: str, *, force: bool = False) -> None:
        self._run("delete", *(["--force"] if force else []), id)

    def ps(self, id: str) -> list[int]:
        out = self._run("ps", "--format", "json", id)
        pids = json.loads(out or "[]")
        return [int(p) for p in pids or []]

