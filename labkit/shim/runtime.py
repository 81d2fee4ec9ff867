"""How the shim runs the OCI runtime: runc's command line, for labkit-runc, runc, crun or a path.

Every call has the form containerd's runc shim uses (INTERFACES.md §2.1)::

    <runtime> --root <root>/<namespace> --log <bundle>/log.json --log-format json <verb> …

The command lines themselves are built and run by labkit.wire.runtime (the client of runc's
command line, go-runc's role, which also knows how crun must be started on this host's hybrid
cgroups); this module adds what only the shim decides: which runtime, from which options.

The runtime is a short-lived command: `create` sets the container up and exits, leaving the
container's init paused before execve (and reparented to the shim, the subreaper); `start`
lets it go; `state`, `kill`, `ps`, `delete` each do one thing and exit. When a command fails,
the runtime appends `{"level":"error","msg":…}` lines to the --log file and exits non-zero; the
last error line is the message that travels up to the user, as
"OCI runtime create failed: <msg>".

Which runtime: exactly what the options say. They come with Task.Create
(containerd.runc.v1.Options{binary_name, root}: dockerd chose and resolved the runtime, and
containerd passed it on unchanged), and the shim records them in the bundle's options.json, in
the shape containerd's runc shim uses, `{"binary_name": "runc", "root": "/run/docker/runtime-runc"}`,
so that `labkit-shim delete` finds the same runtime later. As in containerd, the namespace is
appended to the root, so a real dockerd's containers live under /run/docker/runtime-runc/moby.

One fallback, and only one: when no options name a binary at all (a bare `ctr run`, say), the
shim runs DEFAULT_BINARY, labkit's own runtime — as containerd-shim-runc-v2 runs "runc".
"""

from __future__ import annotations

import json
import os
import sys

from labkit.wire.runtime import OCIRuntimeError, Runtime
from labkit.wire.shim import messages
from labkit.wire.shim.protocol import RUNC_OPTIONS_URL

__all__ = ["DEFAULT_BINARY", "OCIRuntimeError", "Runtime", "RuntimeOptions", "open_runtime",
           "resolve_binary"]

# The runtime when no options name one (see the module docstring): the shim's only default.
DEFAULT_BINARY = "labkit-runc"


class RuntimeOptions:
    """Which runtime binary, with which --root (a plain class: see service.Process for why)."""

    def __init__(self, binary: str = "", root: str | os.PathLike | None = None):
        self.binary = binary      # a name looked up in PATH, or a path; "" = DEFAULT_BINARY
        # the namespace is appended to it; none given: labkit's (labkit.paths.RUNTIME_ROOT)
        self.root = os.fspath(root) if root else default_root()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RuntimeOptions) and (self.binary, self.root) == (other.binary, other.root)

    def __repr__(self) -> str:
        return f"RuntimeOptions(binary={self.binary!r}, root={self.root!r})"

    @classmethod
    def load(cls, bundle: str | os.PathLike) -> "RuntimeOptions":
        """Read <bundle>/options.json if there is one; its absence means the defaults."""
        path = os.path.join(bundle, "options.json")
        if not os.path.exists(path):
            return cls()
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read runtime options {path}: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"runtime options {path} must hold a JSON object, not {type(data).__name__}")
        return cls(binary=data.get("binary_name") or "", root=data.get("root") or None)

    @classmethod
    def from_request(cls, options, bundle: str | os.PathLike) -> "RuntimeOptions":
        """The options of a CreateTaskRequest (a protobuf Any) if it carries containerd's runc
        options; otherwise what the bundle's options.json says (or nothing at all)."""
        if not options.type_url.endswith(RUNC_OPTIONS_URL):
            return cls.load(bundle)
        runc = messages.RuncOptions.FromString(options.value)
        return cls(binary=runc.binary_name, root=runc.root or None)

    def save(self, bundle: str | os.PathLike) -> None:
        """Write <bundle>/options.json, as containerd's runc shim records the options it got."""
        with open(os.path.join(bundle, "options.json"), "w") as f:
            json.dump({"binary_name": self.binary, "root": self.root}, f)


def resolve_binary(binary: str) -> str:
    """A runtime name or path -> the path to execute."""
    if "/" in binary:
        if not os.access(binary, os.X_OK):
            raise OCIRuntimeError(f"runtime binary {binary} is not an executable file")
        return binary
    # PATH searched as execvp(3) does. (Not shutil.which: a shim carries what it imports for
    # the life of its container, and shutil is ~0.5 MB for this one loop.)
    found = next((candidate for directory in os.environ.get("PATH", os.defpath).split(os.pathsep)
                  for candidate in [os.path.join(directory or ".", binary)]
                  if os.path.isfile(candidate) and os.access(candidate, os.X_OK)), None)
    if found is None:
        # labkit's own commands sit next to the interpreter (the lab's virtualenv), which may not
        # be on the PATH of whoever started the shim.
        candidate = os.path.join(os.path.dirname(sys.executable), binary)
        if os.path.exists(candidate):
            return candidate
        raise OCIRuntimeError(f"runtime binary {binary!r} not found in PATH")
    return found


def open_runtime(options: RuntimeOptions, namespace: str, bundle: str | os.PathLike) -> Runtime:
    """The runtime for a task in `bundle`: --root <root>/<namespace>, --log <bundle>/log.json."""
    return Runtime(resolve_binary(options.binary or DEFAULT_BINARY),
                   os.path.join(options.root, namespace), os.path.join(bundle, "log.json"))


def default_root() -> str:
    """labkit's runtime root (labkit.paths.RUNTIME_ROOT), for options that name none. Imported
    here, not at the top: labkit.paths brings pathlib, ~0.8 MB a shim needs for nothing else."""
    from labkit import paths

    return str(paths.RUNTIME_ROOT)
