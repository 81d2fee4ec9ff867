"""`labkit-runc delete [--force] ID`: forget a container and release what it held.

Allowed when the container is stopped; a created container (never started) is killed
first, as runc does; a running one only with --force (SIGKILL to all its processes).
Deleting removes the cgroup directories create made, runs the poststop hooks and
removes <root>/<id>/. The runtime never reaps init (it is the shim's child): a killed init
is "stopped" as soon as it is a zombie.

The state directory goes LAST, only once init is dead: a created init waits on
<root>/<id>/exec.fifo, and without the directory nobody could start or find it again.
(A create that never finished has no pid in state.json: its processes are found through
the cgroup. And init itself gives up once its fifo is gone: init.wait_for_start.)
"""

from __future__ import annotations

import os
import time

from labkit.runc import cgroups
from labkit.signals import SIGKILL
from labkit.runc.container import Container
from labkit.runc.hooks import run_hooks   # cheap: json and subprocess only when hooks run
from labkit.runc.kill import container_pids
from labkit.runc.log import ContainerError, warning

# argparse only for readers and type checkers: this command is run by main.quick_args,
# which spares it argparse's import (main.py says why)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", "-f", action="store_true", help="kill a running container first")
    p.add_argument("id")


def run(args: argparse.Namespace) -> int:
    try:
        c = Container.load(args.root, args.id)
    except ContainerError:
        if args.force:
            return 0                  # runc: `delete --force` of an unknown id is not an error
        raise
    delete(c, args.force)
    return 0


def delete(c: Container, force: bool = False) -> None:
    status = c.status()
    if status in ("running", "paused") and not force:
        raise ContainerError(f"cannot delete container {c.id} that is not stopped: {status}")
    if status != "stopped" or not c.pid:
        kill_and_wait(c)
    release(c)
    # the container is gone anyway: a failing hook is reported, and the next ones still run
    run_hooks((c.config.get("hooks") or {}).get("poststop"), c.oci_state(),
              warn=lambda msg: warning(f"poststop: {msg}"))
    c.remove_state()


def release(c: Container) -> None:
    """What the container held on the host besides its processes: its cgroup directories
    and, for a container without a mount namespace of its own, the mounts its init made in
    the host's mount table (on top of the rootfs: init.py, step 3)."""
    if c.cgroup_created:
        cgroups.destroy(c.cgroup_created)
    if c.host_rootfs_mounts is not None:
        # imported here: only such containers need it, and every `delete` would pay for
        # mounts' imports (labkit.syscalls and ctypes …)
        from labkit.runc import mounts
        mounts.detach_added(c.rootfs, c.host_rootfs_mounts)


def kill_and_wait(c: Container, timeout: float = 5) -> None:
    """SIGKILL every process of the container and wait until init is dead (a zombie
    counts: its parent reaps it). Raises ContainerError if it outlives `timeout`."""
    # init by its pid only while it is still ours (a recycled pid is someone else's)
    for pid in container_pids(c) or ([c.pid] if c.init_alive() else []):
        try:
            os.kill(pid, SIGKILL)
        except ProcessLookupError:
            pass
    if c.cgroup_paths and cgroups.is_frozen(c.cgroup_paths):
        cgroups.freeze(c.cgroup_paths, False)         # frozen tasks die only once thawed
    deadline = time.monotonic() + timeout
    while c.init_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if c.init_alive():
        raise ContainerError(f"container {c.id}: init {c.pid} did not die after SIGKILL")
