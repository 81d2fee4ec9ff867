"""reset: return the host to clean, whatever state the lab was left in.

1. `down`: stop the daemons by their pid files.
2. Stop what outlived them — shims and containers — by PIDs the lab itself recorded or can
   ask for: `*.pid` files under the run directory (a bundle's init.pid), OCI runtime
   state.json files (the init PID and its start time), and each shim, asked over the socket
   named in its bundle's `address` file (the shim protocol's Connect answers with the shim's
   and the task's PIDs). Never by process name: another lab, or a real docker, may run the
   same programs. A container `docker pause` left frozen is thawed first (thaw_cgroups): a
   frozen process takes its SIGKILL only when thawed.
3. Unmount everything mounted under the lab's run and data directories, read from
   /proc/self/mountinfo, deepest first (a mount on top of another must go first), lazily if
   busy.
4. Remove the containers' cgroups left under the lab's cgroup parent (empty ones only: a
   cgroup that still holds processes is reported, not touched).
4b. Stop the port proxies recorded in the containers' ports.json and delete the links
   (bridges, veths) whose alias names the lab's dockerd (labkit.dockerd.net.bridge).
5. Remove the run, data and log directories (never the virtualenv, never the configuration).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

from labkit import paths, procfs
from labkit.lab.control import Report, down


def _state_files(run_dir: Path):
    """Files under `run_dir`, not descending into mount points: a container's root
    filesystem mounted in a bundle has its own /run/*.pid files, whose PIDs belong to another
    PID namespace and must never be signalled from here."""
    mounted = set(mounts_under([run_dir]))
    for top, dirs, files in os.walk(run_dir.resolve()):
        dirs[:] = [d for d in dirs if os.path.join(top, d) not in mounted and d != "rootfs"]
        for name in files:
            yield Path(top, name)


def recorded_pids(run_dir: Path) -> set[int]:
    """PIDs of lab processes recorded under `run_dir` that are still alive."""
    pids: set[int] = set()
    if not run_dir.is_dir():
        return pids
    for f in _state_files(run_dir):
        try:
            if not f.is_file():
                continue
            if f.suffix == ".pid":
                pid = int(f.read_text().strip() or 0)
                if pid > 1 and procfs.alive(pid):
                    pids.add(pid)
            elif f.name == "state.json":
                state = json.loads(f.read_text())
                pid = int(state.get("init_process_pid") or state.get("pid") or 0)
                started = state.get("init_process_start")
                # runc records the start time so that a reused PID is not mistaken for the
                # container's init; honour it where present.
                stat = procfs.stat(pid) if pid > 1 and procfs.alive(pid) else None
                if stat is not None and (started is None or stat.start_time == int(started)):
                    pids.add(pid)
        except (OSError, ValueError, TypeError, AttributeError):
            continue  # half-written or foreign file: not a PID we can trust
    pids.discard(os.getpid())
    return pids


def shim_pids(run_dir: Path, timeout: float = 2.0) -> set[int]:
    """Ask every shim whose bundle is under `run_dir` for its PID and its task's PID."""
    from labkit.wire.shim.client import ShimClient
    from labkit.wire.shim.protocol import ShimError

    pids: set[int] = set()
    for address_file in run_dir.glob("containerd/io.containerd.runtime.v2.task/*/*/address"):
        try:
            address = address_file.read_text().strip()
            with ShimClient(address, timeout=timeout) as shim:
                answer = shim.connect()
        except (OSError, ShimError):
            continue  # no shim answers there any more: nothing to stop
        pids |= {p for p in (answer["shim_pid"], answer["task_pid"]) if p > 1}
    pids.discard(os.getpid())
    return pids


def kill_pids(pids: set[int], timeout: float = 5.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)  # the lab is being reset: nothing to save
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(procfs.alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def mounts_under(roots: list[Path], mountinfo: str | None = None) -> list[str]:
    """Mount points inside any of `roots`, in the order to unmount them: deepest path first,
    and of two mounts on the same path the later (upper) one first."""
    mounts = procfs.mountinfo() if mountinfo is None else procfs.parse_mountinfo(mountinfo)
    prefixes = [str(r.resolve()) if r.exists() else str(r) for r in roots]
    found = []
    for order, m in enumerate(mounts):
        target = m.mount_point
        if any(target == p or target.startswith(p.rstrip("/") + "/") for p in prefixes):
            found.append((target.count("/"), order, target))
    found.sort(reverse=True)
    return [t for _, _, t in found]


def unmount_all(roots: list[Path], report: Report = print) -> int:
    from labkit import syscalls  # the one module for kernel calls Python lacks

    count = 0
    for target in mounts_under(roots):
        try:
            syscalls.umount2(target)
        except OSError:
            try:
                syscalls.umount2(target, syscalls.MNT_DETACH)  # busy: detach it now, free later
            except OSError as e:
                report(f"could not unmount {target}: {e}")
                continue
        count += 1
    return count


def container_ids(run_dir: Path, lib_dir: Path) -> set[str]:
    """The ids of the containers this lab knows: containerd's task bundles
    (<run>/containerd/io.containerd.runtime.v2.task/<ns>/<id>) and dockerd's records
    (<lib>/docker/containers/<id>)."""
    ids = {p.name for p in run_dir.glob("containerd/io.containerd.runtime.v2.task/*/*") if p.is_dir()}
    ids |= {p.name for p in lib_dir.glob("docker/containers/*") if p.is_dir()}
    return ids


def thaw_cgroups(parent: str = paths.CGROUP_PARENT, report: Report = print,
                 only: set[str] | None = None) -> int:
    """Thaw the containers' cgroups under `parent` that `docker pause` left frozen (all of
    them, or with `only` those container ids): a frozen process takes its SIGKILL only once
    thawed, so reset does this before it kills. Returns how many were thawed."""
    from labkit.lab import delegation
    from labkit.runc import cgroups

    driver = cgroups.host_driver()
    scope = delegation.recorded()
    if scope is not None:        # as the runtime sees it, from containerd's scope (delegation)
        inside = os.path.relpath(scope, cgroups.V2_ROOT)
        driver = cgroups.V2(own=f"/{inside}/{delegation.SUPERVISOR}")
    ids = set(only or ())
    if only is None:
        for top in driver.paths_for(parent, "").values():
            if os.path.isdir(top):
                ids |= {e.name for e in os.scandir(top) if e.is_dir()}
    thawed = 0
    for cid in sorted(ids):
        where = driver.paths_for(f"{parent}/{cid}", cid)
        if cgroups.is_frozen(where):
            try:
                cgroups.freeze(where, False)
                thawed += 1
            except Exception as e:            # reset goes on: the sweep reports what stays
                report(f"cgroup of {cid} not thawed: {e}")
    return thawed


def remove_cgroups(parent: str = paths.CGROUP_PARENT, report: Report = print,
                   only: set[str] | None = None) -> int:
    """rmdir the cgroups under `parent`, deepest first, in each hierarchy — all of them and
    `parent` itself, or with `only`, just `<parent>/<id>` for those container ids; returns how
    many were removed. rmdir(2) on a cgroup directory fails with EBUSY while it holds a
    process, so a live container's cgroup is never taken from it."""
    from labkit.runc import cgroups

    tops = set(cgroups.paths_for(parent, "").values())
    # On a systemd host with cgroup v2, below the scope `labkit lab up` started containerd in
    # (labkit.lab.delegation), as its runtime placed them.
    from labkit.lab import delegation
    scope = delegation.recorded()
    if scope is not None:
        tops.add(os.path.normpath(scope + "/" + parent))
    # On a hybrid host, runc also makes the container's cgroup in the cgroup2 mount
    # (/sys/fs/cgroup/unified), which labkit-runc's v1 view does not list.
    for m in procfs.mountinfo():
        if m.fstype == "cgroup2":
            tops.add(os.path.normpath(m.mount_point + "/" + parent))
    removed = 0
    for top in tops:
        if not os.path.isdir(top):
            continue
        if only is not None:
            dirs = [d for i in only for d, _s, _f in os.walk(os.path.join(top, i))]
        else:
            dirs = [root for root, _subdirs, _files in os.walk(top)]
        for d in sorted(dirs, key=len, reverse=True):
            try:
                os.rmdir(d)
                removed += 1
            except OSError as e:
                report(f"cgroup {d} not removed: {e.strerror}")
    return removed


def remove_network(dockerd_root: Path, report: Report = print) -> None:
    """The port proxies and links the dockerd of `dockerd_root` left: proxies by the pids in
    ports.json (checked against their command line), links by the alias that names it."""
    from labkit.dockerd import portproxy
    from labkit.dockerd.net import bridge
    from labkit.dockerd.networkstore import daemon_tag
    for ports in sorted((dockerd_root / "containers").glob("*/ports.json")):
        for proxy in portproxy.load(ports):
            if portproxy.is_ours(proxy.pid, ports.parent):
                portproxy.stop(proxy.pid, ports.parent)
                report(f"stopped port proxy {proxy.pid} ({proxy.host_ip}:{proxy.host_port})")
    tag = f"{bridge.ALIAS_PREFIX}{daemon_tag(dockerd_root)} "
    for link in bridge.links():
        if link.alias.startswith(tag) and bridge.delete_link(link.name):
            report(f"deleted link {link.name}")


def reset(report: Report = print) -> None:
    down(report)
    ids = container_ids(paths.RUN, paths.LIB)
    pids = recorded_pids(paths.RUN) | shim_pids(paths.RUN)
    private = os.environ.get("LABKIT_RUN_DIR") is not None
    if ids or not private:
        thaw_cgroups(report=report, only=ids if private else None)   # paused containers
    if pids:
        kill_pids(pids)
        report(f"stopped {len(pids)} leftover lab process(es): {sorted(pids)}")
    # A private lab (LABKIT_RUN_DIR: tests, a second lab) shares the host's cgroup tree with
    # the lab in use: it removes only its own containers' cgroups; the lab at the default
    # paths owns all of CGROUP_PARENT.
    if ids or not private:
        n = remove_cgroups(report=report, only=ids if private else None)
        if n:
            report(f"removed {n} cgroup(s) under {paths.CGROUP_PARENT}")
    remove_network(paths.DOCKERD_ROOT, report)
    roots = [paths.RUN, paths.LIB]
    n = unmount_all(roots, report)
    if n:
        report(f"unmounted {n} mount(s) under {', '.join(map(str, roots))}")
    for d in (paths.RUN, paths.LIB, paths.LOG):
        if d.exists():
            left = mounts_under([d])
            if left:
                # Removing files through a mount would delete the mounted filesystem's
                # contents (a bind mount's source!): leave the directory for a human.
                report(f"not removing {d}: still mounted: {', '.join(left)}")
                continue
            shutil.rmtree(d, ignore_errors=True)
            if d.exists():
                report(f"could not remove {d} entirely (still mounted or busy?)")
            else:
                report(f"removed {d}")
