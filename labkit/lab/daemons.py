"""The lab's daemons: how each is started, where it listens, how to tell that it answers.

"Answering" is checked with each daemon's own protocol, not by looking for a process or a
socket file — a socket can exist with nobody listening, and a process can be alive but stuck:

    registry    GET /v2/            200 means a registry speaking the distribution API v2
    containerd  Version.Version     a gRPC call over the unix socket
    dockerd     HEAD /_ping         the first thing every docker CLI command does
    jupyter     GET /api/status     with the lab's token (see labkit.lab.jupyter)

The engine's three daemons are required: `up` fails if one does not answer. JupyterLab is
not: the engine is useful without it, so `up` reports its problem and goes on.
"""

from __future__ import annotations

import http.client
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from labkit import paths, procfs


@dataclass(frozen=True)
class Daemon:
    name: str                     # "labkit-dockerd": the command, the log and pid file names
    layer: str                    # "L4 dockerd"
    implementation: str           # "reference", "workspace:/root/ws", "binary:dockerd"
    argv: list[str]               # full command line
    address: str                  # what `status` shows: a socket path or host:port
    probe: Callable[[], bool]     # True when the daemon answers on `address`
    # Added to the daemon's environment when it is started (called then, not before: making
    # Jupyter's token is a side effect that `status` must not have).
    environment: Callable[[], dict[str, str]] = field(default=dict)
    # What its command line shows (to recognise it by PID); default: its name.
    process: str = ""
    required: bool = True         # False: `up` reports a failure and starts the rest anyway
    problem: str | None = None    # why it cannot be started as configured (`up` reports it)
    disabled: str | None = None   # why this lab does not run it at all (not a problem)
    # Started in a cgroup systemd delegated, where the host needs one (labkit.lab.delegation):
    # containerd, below which the runtime makes the containers' cgroups.
    delegated: bool = False

    @property
    def pid_file(self) -> Path:
        return paths.RUN / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return paths.LOG / f"{self.name}.log"


@dataclass(frozen=True)
class DaemonStatus:
    daemon: Daemon
    pid: int | None               # from the pid file, if that process is alive
    answering: bool


def implementation(layer: str, strict: bool = True) -> tuple[str, str]:
    """(choice, program) for a process layer, as configured in labkit.lab.implementations:
    ("reference", "/opt/labkit/venv/bin/labkit-dockerd"), ("workspace:/root/ws", …), …

    A configuration error (ImplementationError, naming the layer and the path) is raised when
    `strict`; otherwise the layer is shown as "invalid configuration" running the reference's
    command name, so that `status` can still say what runs."""
    from labkit.lab import implementations

    try:
        impls = implementations.load()
        return impls.choice(layer).describe(), str(impls.resolve_binary(layer))
    except implementations.ImplementationError:
        if strict:
            raise
        command = implementations.LAYERS[layer].command or layer
        return "invalid configuration", command


def probe_registry(addr: str, timeout: float = 1.0) -> bool:
    host, _, port = addr.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def probe_containerd(sock: Path, timeout: float = 1.0) -> bool:
    if not sock.exists():
        return False  # do not let gRPC spend the whole timeout retrying a missing socket
    import grpc  # imported here: the CLI should not pay grpc's import time for `labkit ps`
    from google.protobuf import empty_pb2

    from labkit.wire.containerd import api_pb2_grpc

    with grpc.insecure_channel(f"unix://{sock}") as channel:
        try:
            api_pb2_grpc.VersionStub(channel).Version(empty_pb2.Empty(), timeout=timeout)
            return True
        except grpc.RpcError:
            return False


def probe_dockerd(sock: Path, timeout: float = 1.0) -> bool:
    """dockerd answers /_ping. A 500 is an answer too: it is a workspace's dockerd whose
    router is not written yet (chapter 09), up and saying so -- `docker run` must show the
    student that message, not a lab that never came up."""
    from labkit.client import APIError, Client, DaemonNotRunning

    try:
        Client(f"unix://{sock}", timeout=timeout).ping()
        return True
    except APIError as e:
        return e.status >= 500
    except (DaemonNotRunning, OSError):
        return False


def jupyter_daemon() -> Daemon:
    from labkit.lab import jupyter

    off = jupyter.disabled()
    if off:
        return Daemon(name=jupyter.NAME, layer="jupyter", implementation="off",
                      argv=[jupyter.PROGRAM], address="-", probe=lambda: False,
                      process=jupyter.PROGRAM, required=False, disabled=off)
    try:
        s = jupyter.settings()
    except jupyter.JupyterError as e:
        return Daemon(name=jupyter.NAME, layer="jupyter", implementation="invalid configuration",
                      argv=[jupyter.PROGRAM], address="-", probe=lambda: False,
                      process=jupyter.PROGRAM, required=False, problem=str(e))
    return Daemon(
        name=jupyter.NAME, layer="jupyter", implementation=f"jupyterlab {jupyter.version()}",
        argv=jupyter.argv(s), address=s.address, probe=lambda: jupyter.probe(s),
        environment=jupyter.environment, process=jupyter.PROGRAM, required=False,
    )


# The in-process layers each program imports. When one of them is taken from a workspace
# (`labkit lab use namespaces workspace`), the program runs through labkit.lab.launch, which
# answers those imports from the workspace; every other module stays the reference.
USES: dict[str, tuple[str, ...]] = {
    "registry": ("distribution",),
    "containerd": ("content", "snapshotter", "distribution", "syscalls"),
    "dockerd": ("distribution", "network", "builder"),
    "shim": ("syscalls",),
    "runtime": ("namespaces", "cgroups", "rootfs", "syscalls"),
}
# LIB/bin/labkit-runc, LIB/bin/labkit-shim: the programs handed down. Under LIB, not RUN: on a
# systemd host (the VM) /run is mounted noexec, and a runtime there "is not an executable file".
WRAPPERS = "bin"


def overrides(layer: str, impls=None) -> dict[str, Path]:
    """The in-process layers `layer`'s program takes from a workspace: {"namespaces": ws}."""
    from labkit.lab import implementations
    impls = impls or implementations.load()
    found = {}
    for used in USES.get(layer, ()):
        choice = impls.choice(used)
        if choice.kind == "workspace" and choice.value:
            found[used] = Path(choice.value)
    return found


def _launched(layer: str, impls) -> tuple[str, list[str]] | None:
    """(entry, extra PYTHONPATH) when `layer` must run through labkit.lab.launch, else None:
    a reference or workspace program some of whose in-process layers come from a workspace."""
    from labkit.lab import implementations
    choice = impls.choice(layer)
    if choice.kind == "binary" or not overrides(layer, impls):
        return None
    info = implementations.LAYERS[layer]
    if choice.kind == "reference":
        return info.entry, []
    return implementations.STUDENT_PACKAGE + info.entry[len("labkit"):], [choice.value]


def handed_down(layer: str, strict: bool = True) -> str:
    """The program given to the layer above for the shim (containerd's --shim) or the runtime
    (dockerd's --default-runtime): the configured one, or LIB/bin/<command> when it must run
    through labkit.lab.launch or start without the site module (written by write_wrappers)."""
    from labkit.lab import implementations
    _, program = implementation(layer, strict)
    try:
        impls = implementations.load()
        wrapped = _launched(layer, impls) is not None or _started_without_site(layer, impls)
    except implementations.ImplementationError:
        if strict:
            raise
        return program
    if not wrapped:
        return program
    return str(paths.LIB / WRAPPERS / implementations.LAYERS[layer].command)


# The reference programs handed down that start without the site module: a LIB/bin script
# (launch.write_program). labkit-runc, because the shim runs it several times per container
# and site's share of each start-up (~20 ms with an editable install) is more than a `start`
# or `delete` does (labkit.runc.main).
WITHOUT_SITE = ("runtime",)


def _started_without_site(layer: str, impls) -> bool:
    return layer in WITHOUT_SITE and impls.choice(layer).kind == "reference" \
        and _launched(layer, impls) is None


def write_wrappers() -> list[Path]:
    """Write LIB/bin/<command> for the shim and the runtime where they run through the
    launcher, or start without the site module (see handed_down); `labkit lab up` and
    `labkit lab use` call it."""
    from labkit.lab import implementations, launch
    impls = implementations.load()
    written = []
    for layer in ("shim", "runtime"):
        command = implementations.LAYERS[layer].command
        if _started_without_site(layer, impls):
            written.append(launch.write_program(paths.LIB / WRAPPERS / command, command,
                                                implementations.LAYERS[layer].entry))
            continue
        launched = _launched(layer, impls)
        if launched is None:
            continue
        entry, pythonpath = launched
        written.append(launch.write_wrapper(paths.LIB / WRAPPERS / command, command, entry,
                                            overrides(layer, impls),
                                            Path(pythonpath[0]) if pythonpath else None))
    return written


def _daemon_argv(name: str, layer: str, program: str, args: list[str], strict: bool) -> list[str]:
    """A daemon's command line: its program, or the launcher when it takes in-process layers
    from a workspace or is itself a workspace's (`labkit lab use dockerd workspace`).

    Through the launcher, `--as=NAME` keeps its name in /proc/<pid>/cmdline, for read_pid:
    the workspace's own wrapper (DIR/bin/labkit-dockerd) runs `python -c …`, a command line
    that names no program, so the lab could neither recognise nor stop what it started.
    The workspace reaches the launched program's PYTHONPATH through _daemon_environment."""
    import sys

    from labkit.lab import implementations
    try:
        impls = implementations.load()
        launched = _launched(layer, impls)
        workspace = impls.workspace(layer)
    except implementations.ImplementationError:
        if strict:
            raise
        launched, workspace = None, None
    if launched is None and workspace is None:
        return [program, *args]
    if launched is not None:
        entry, _ = launched
    else:
        entry = implementations.STUDENT_PACKAGE + \
            implementations.LAYERS[layer].entry[len("labkit"):]
    layers = [f"--layer={k}={v}" for k, v in sorted(overrides(layer, impls).items())]
    return [sys.executable, "-m", "labkit.lab.launch", f"--as={name}", *layers, "--",
            entry, name, *args]


def _daemon_environment(layer: str) -> Callable[[], dict[str, str]]:
    """What a daemon's environment gains when it is started: for a workspace's program, the
    workspace on PYTHONPATH (before what is there: `labkit_student` is found in it, while
    `labkit` stays whichever the lab itself runs)."""
    def environment() -> dict[str, str]:
        from labkit.lab import implementations
        try:
            workspace = implementations.load().workspace(layer)
        except implementations.ImplementationError:
            return {}
        if workspace is None:
            return {}
        rest = os.environ.get("PYTHONPATH", "")
        return {"PYTHONPATH": str(workspace) + (f":{rest}" if rest else "")}
    return environment


def lab_daemons(strict: bool = True) -> list[Daemon]:
    """The lab's daemons in start order (each needs the ones before it; JupyterLab last).
    `strict`: see implementation()."""
    registry_url = f"http://{paths.REGISTRY_ADDR}"
    registry_impl, registry = implementation("registry", strict)
    containerd_impl, containerd = implementation("containerd", strict)
    dockerd_impl, dockerd = implementation("dockerd", strict)
    # The layers below containerd are not daemons: containerd starts a shim per container and
    # the shim runs the runtime. Their configured programs reach them as command-line choices:
    # containerd's --shim, and dockerd's --default-runtime (sent to the shim as binary_name).
    # Where an in-process layer they import comes from a workspace, these are LIB/bin wrappers
    # running them through labkit.lab.launch (handed_down).
    shim = handed_down("shim", strict)
    runtime = handed_down("runtime", strict)
    return [
        Daemon(
            name="labkit-registry", layer="registry", implementation=registry_impl,
            environment=_daemon_environment("registry"),
            argv=_daemon_argv("labkit-registry", "registry", registry,
                              ["--root", str(paths.REGISTRY_ROOT),
                               "--listen", paths.REGISTRY_ADDR], strict),
            address=paths.REGISTRY_ADDR,
            probe=lambda: probe_registry(paths.REGISTRY_ADDR),
        ),
        Daemon(
            name="labkit-containerd", layer="L3 containerd", implementation=containerd_impl,
            environment=_daemon_environment("containerd"),
            argv=_daemon_argv("labkit-containerd", "containerd", containerd,
                              ["--address", str(paths.CONTAINERD_SOCK),
                               "--root", str(paths.CONTAINERD_ROOT),
                               "--state", str(paths.CONTAINERD_STATE), "--shim", shim], strict),
            address=str(paths.CONTAINERD_SOCK),
            probe=lambda: probe_containerd(paths.CONTAINERD_SOCK),
            delegated=True,
        ),
        Daemon(
            name="labkit-dockerd", layer="L4 dockerd", implementation=dockerd_impl,
            environment=_daemon_environment("dockerd"),
            argv=_daemon_argv("labkit-dockerd", "dockerd", dockerd,
                              ["-H", f"unix://{paths.DOCKER_SOCK}",
                               "--containerd", str(paths.CONTAINERD_SOCK),
                               "--root", str(paths.DOCKERD_ROOT),
                               "--exec-root", str(paths.DOCKERD_EXEC_ROOT),
                               "--registry-mirror", registry_url, "--default-runtime", runtime],
                              strict),
            address=str(paths.DOCKER_SOCK),
            probe=lambda: probe_dockerd(paths.DOCKER_SOCK),
        ),
        jupyter_daemon(),
    ]


def read_pid(daemon: Daemon) -> int | None:
    """The PID in the daemon's pid file, if that process is alive and is this daemon.
    (PIDs are reused: a stale pid file must not make us signal an unrelated process.)"""
    try:
        pid = int(daemon.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0 or not procfs.alive(pid):
        return None
    name = daemon.process or daemon.name
    # [:4]: python -m labkit.lab.launch --as=NAME, for a daemon run through the launcher
    if not any(os.path.basename(a) == name or a.endswith(name)
               for a in procfs.cmdline(pid)[:4]):
        return None
    return pid
