"""up / down / status / images: the lab's daemons as background processes.

`up` starts each daemon that does not already answer, in order (registry, containerd,
dockerd — each needs the one before), and waits until it answers before starting the next;
JupyterLab comes last and is optional: if it fails, `up` says why and the engine still runs.
It is idempotent: a second `up` finds everything answering and starts nothing.

`down` stops them in reverse order by the PIDs in their pid files: SIGTERM, which lets a
daemon close its sockets and save its state, then SIGKILL if it has not gone after a grace
period. Containers are left to dockerd: the shims keep them running (that is what the shim
is for), and a later `up` finds them again; `labkit lab reset` stops everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

from labkit import paths, procfs
from labkit.lab import delegation
from labkit.lab.daemons import Daemon, DaemonStatus, lab_daemons, read_pid, write_wrappers

START_TIMEOUT = 30.0   # seconds for a daemon to answer after it was started
STOP_TIMEOUT = 10.0    # seconds between SIGTERM and SIGKILL


class LabError(Exception):
    """A lab operation failed; the message says which daemon and where its log is."""


def _log_tail(daemon: Daemon, since: int = 0, lines: int = 8) -> str:
    """The last lines the daemon wrote to its log after byte offset `since` (this start)."""
    try:
        with open(daemon.log_file, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"\n    {line}" for line in text) or " (nothing)"


def start(daemon: Daemon, timeout: float = START_TIMEOUT) -> int:
    """Start one daemon in the background and wait until it answers; return its PID."""
    if daemon.problem:
        raise LabError(f"{daemon.name}: {daemon.problem}")
    if daemon.implementation.startswith("binary"):
        # A real dockerd/containerd/registry takes other flags and configuration files;
        # the lab starts only labkit's command lines (reference or a student's workspace).
        raise LabError(f"{daemon.name} is configured as {daemon.implementation}: start that "
                       f"program yourself so that it answers on {daemon.address}")
    paths.RUN.mkdir(parents=True, exist_ok=True)
    paths.LOG.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **daemon.environment()}
    # on a systemd host with cgroup v2: in a scope whose cgroup systemd delegates to us (the
    # one made before, if its shims kept it), in its leaf (labkit.lab.delegation)
    delegate = daemon.delegated and delegation.needed()
    scope = delegation.recorded(alive=True) if delegate else None
    argv = delegation.scoped(daemon.argv) if delegate and scope is None else daemon.argv
    with open(daemon.log_file, "ab") as log:
        log.write(f"--- labkit lab up: {' '.join(argv)}\n".encode())
        log.flush()
        since = log.tell()
        # A new session: the daemon has no controlling terminal and survives the shell that
        # ran `labkit lab up`. stdin is /dev/null so it never waits for input.
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    close_fds=True, env=env)
        except OSError as e:       # the program is missing or not executable
            raise LabError(f"{daemon.name}: cannot run {argv[0]}: "
                           f"{e.strerror or e}") from None
    daemon.pid_file.write_text(f"{proc.pid}\n")
    if delegate:
        try:
            delegation.record(delegation.into_leaf(proc.pid, scope) if scope
                              else delegation.supervise(proc.pid))
        except (RuntimeError, OSError) as e:
            stop(daemon)
            raise LabError(f"{daemon.name}: no delegated cgroup for its containers: {e}") \
                from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            daemon.pid_file.unlink(missing_ok=True)
            raise LabError(f"{daemon.name} exited with status {proc.returncode} before it "
                           f"answered; its log {daemon.log_file} ends with:"
                           f"{_log_tail(daemon, since)}")
        if daemon.probe():
            return proc.pid
        time.sleep(0.1)
    stop(daemon)
    raise LabError(f"{daemon.name} did not answer on {daemon.address} within {timeout:.0f}s "
                   f"(stopped it again); its log {daemon.log_file} ends with:"
                   f"{_log_tail(daemon, since)}")


def stop(daemon: Daemon, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop one daemon by its pid file; return True if there was one to stop."""
    pid = read_pid(daemon)
    if pid is None:
        daemon.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while procfs.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if procfs.alive(pid):
        os.kill(pid, signal.SIGKILL)
        while procfs.alive(pid):
            time.sleep(0.05)
    daemon.pid_file.unlink(missing_ok=True)
    return True


Report = Callable[[str], None]


def up(report: Report = print, names: list[str] | None = None) -> list[str]:
    """Start the lab (or only the daemons in `names`); do nothing for those that answer.

    A required daemon that does not come up raises LabError. An optional one (JupyterLab)
    that does not is returned in the list of problems, and the others are started anyway."""
    problems = []
    write_wrappers()            # the programs handed down, where they take a workspace's layers
    for daemon in lab_daemons():
        if names is not None and daemon.name not in names:
            continue
        if daemon.disabled:
            report(f"{daemon.name}: not started: {daemon.disabled}")
            continue
        if daemon.probe():
            pid = read_pid(daemon)
            owner = f"pid {pid}" if pid else "not started by the lab"
            report(f"{daemon.name}: already answering on {daemon.address} ({owner})")
            continue
        try:
            pid = start(daemon)
        except LabError as e:
            if daemon.required:
                raise
            problems.append(str(e))
            continue
        report(f"{daemon.name}: started, pid {pid}, answering on {daemon.address}, "
               f"log {daemon.log_file}")
    return problems


def down(report: Report = print, names: list[str] | None = None) -> None:
    """Stop the lab's daemons (newest layer first). Containers are left to their shims.
    (A broken implementations configuration must not keep the lab from stopping: the pid
    files say what to stop, whatever the configuration now says.)"""
    for daemon in reversed(lab_daemons(strict=False)):
        if names is not None and daemon.name not in names:
            continue
        if stop(daemon):
            report(f"{daemon.name}: stopped")
        elif daemon.probe():
            report(f"{daemon.name}: answering on {daemon.address} but not started by the lab "
                   "(no pid file): left alone")
        else:
            report(f"{daemon.name}: not running")


def use(layer: str, text: str, report: Report = print) -> None:
    """`labkit lab use LAYER IMPL`: choose what runs `layer` (implementations.use writes the
    configuration file), then restart exactly the running daemons whose command line that
    changes. Containers keep running in their shims; the next container uses the new choice.
    What runs the runtime and the shim is read per container (LIB/bin wrappers, rewritten
    here), so choosing them restarts nothing unless the wrapper appears or goes away."""
    from labkit.lab import implementations
    before = {d.name: d for d in lab_daemons(strict=False)}
    running = {name for name, d in before.items() if d.required and read_pid(d)}
    choice = implementations.use(layer, text)
    report(f"{layer}: {choice.describe()} (in {choice.source})")
    shadow = implementations.LAYER_ENV_PREFIX + layer.upper()
    if os.environ.get(shadow):
        report(f"warning: {shadow}={os.environ[shadow]} is set in this shell and wins over the "
               "file for the commands run from it")
    write_wrappers()
    after = {d.name: d for d in lab_daemons()}
    changed = [name for name in after if name in running
               and after[name].argv != before[name].argv]
    for name in reversed(changed):                 # dockerd before containerd
        stop(before[name])
    for name in changed:                           # containerd before dockerd
        start(after[name])
        report(f"{name}: restarted, pid {read_pid(after[name])}")
    if not running:
        report("the lab is not running: `labkit lab up` starts it with this choice")
    elif not changed:
        report("nothing to restart: the next container uses it")
    for line in runs_where(layer):
        report(line)


def runs_where(layer: str) -> list[str]:
    """What now runs the given layer's code, in words, for `use` and `status`."""
    from labkit.lab import implementations
    from labkit.lab.daemons import USES, overrides
    impls = implementations.load()
    info = implementations.LAYERS[layer]
    if not info.in_process:
        return [f"{layer} runs {impls.choice(layer).describe()} (the next container uses it)"]
    programs = [implementations.LAYERS[p].command for p, used in USES.items() if layer in used]
    where = ", ".join(p for p in programs if p) or "the notebooks and checkpoints only"
    taken = [p for p, used in USES.items() if layer in overrides(p, impls)]
    how = "from the workspace" if taken else "labkit's reference"
    return [f"{layer} ({info.reference}) runs in {where}: {how}"]


def status(optional: bool = False) -> list[DaemonStatus]:
    """Each of the engine's daemons, its PID and whether it answers; with `optional`, also
    JupyterLab (`labkit lab status` shows it; `all(s.answering for s in status())` asks
    whether the engine is up, which it can be without JupyterLab). A configuration error does
    not stop `status` (it shows that layer as "invalid configuration"); `up` raises it."""
    return [DaemonStatus(d, read_pid(d), d.probe()) for d in lab_daemons(strict=False)
            if d.required or optional]


def push_images(report: Report = print) -> None:
    """Build the lab's images (hello-world, busybox) and push them into the lab registry.
    The registry is started for this if it is not running, and stopped again afterwards,
    so the lab is left as it was found."""
    try:
        from labkit.images import build_and_push  # the images layer; imported when needed
    except ImportError as e:
        raise LabError(f"cannot build the lab images: labkit.images.build_and_push is "
                       f"missing ({e})") from None

    registry = next(d for d in lab_daemons() if d.name == "labkit-registry")
    started_here = False
    if not registry.probe():
        start(registry)
        started_here = True
    try:
        def each(name: str, digest: str, pushed: bool) -> None:
            what = "pushed" if pushed else "already there"
            report(f"{paths.REGISTRY_ADDR}/library/{name}:latest: {what} ({digest})")

        build_and_push(paths.REGISTRY_ADDR, report=each)
    finally:
        if started_here:
            stop(registry)
