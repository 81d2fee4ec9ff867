"""How the shim runs the OCI runtime: runc's command line, for labkit-runc, runc, crun or a path.

Every call has the form containerd's runc shim uses (INTERFACES.md §2.1)::

    <runtime> --root <root>/<namespace> --log <bundle>/log.json --log-format json <verb> …

The command lines themselves are built and run by labkit.runc.binary (the runtime layer's
driver for any runc-compatible binary, which also knows how crun must be started on this
host's hybrid cgroups); this module adds what only the shim needs: where the options come
from, and `ps`.

The runtime is a short-lived command: `create` sets the container up and exits, leaving the
container's init paused before execve (and reparented to the shim, the subreaper); `start`
lets it go; `state`, `kill`, `ps`, `delete` each do one thing and exit. When a command fails,
the runtime appends `{"level":"error","msg":…}` lines to the --log file and exits non-zero; the
last error line is the message that travels up to the user, as
"OCI runtime create failed: <msg>".

Which runtime: the bundle's options.json, written in the shape containerd's runc shim uses,
`{"binary_name": "runc", "root": "/run/docker/runtime-runc"}`. As in containerd, the namespace
is appended to the root, so a real dockerd's containers live under
/run/docker/runtime-runc/moby. Without a binary_name, the shim runs the runtime the course
configuration names (labkit.course.implementations: labkit-runc unless configured otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from labkit import paths
from labkit.runc.binary import OCIRuntimeError
from labkit.runc.binary import Runtime as BinaryRuntime

DEFAULT_BINARY = "labkit-runc"


def configured_binary() -> str:
    """The runtime the course configuration names for layer "runtime" (labkit-runc by default,
    a student's workspace, or runc/crun; see labkit.course.implementations)."""
    try:
        from labkit.course.implementations import resolve_binary as configured
    except ImportError:
        return DEFAULT_BINARY
    return str(configured("runtime"))


@dataclass(frozen=True)
class RuntimeOptions:
    binary: str = ""               # a name looked up in PATH, or a path; "" = as configured
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
        return cls(binary=data.get("binary_name") or "",
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


class Runtime(BinaryRuntime):
    """labkit.runc.binary.Runtime (the runtime layer's own driver), plus `ps` for Task.Pids."""

    def ps(self, id: str) -> list[int]:
        out = self._run("ps", "--format", "json", id)
        try:
            return [int(p) for p in json.loads(out or b"[]") or []]
        except (ValueError, TypeError):
            raise OCIRuntimeError(f"{self.binary} ps {id}: not a JSON list of pids: {out[:200]!r}") from None


def open_runtime(options: RuntimeOptions, namespace: str, bundle: Path) -> Runtime:
    """The runtime for a task in `bundle`: --root <root>/<namespace>, --log <bundle>/log.json."""
    return Runtime(resolve_binary(options.binary or configured_binary()), str(options.root / namespace),
                   str(bundle / "log.json"))
