"""The lab's containers on a systemd host with cgroup v2: below a cgroup they may write to.

On cgroup v2, systemd owns the tree: the root and every slice and unit are its cgroups. A
program that makes cgroups of its own must be given a subtree, a unit with Delegate=yes
(systemd.resource-control(5)); systemd marks that unit's cgroup with the extended attribute
trusted.delegate=1 and enables in it the controllers it delegates. labkit-runc looks for that
mark on its own cgroup and its ancestors and puts its containers below it
(labkit.runc.cgroups.v2_base). The runtime runs in its shim's cgroup, and the shim in
containerd's: so `labkit lab up` starts labkit-containerd in a delegated cgroup, a transient
scope unit, through systemd's command line (labkit speaks no D-Bus):

    systemd-run --scope --unit=labkit-containerd-<lab>.scope --property=Delegate=yes \\
                --quiet --collect -- labkit-containerd …

systemd makes the scope's cgroup, moves systemd-run into it, and systemd-run execs containerd.
One more step follows, for the kernel's "no internal processes" rule: a cgroup that hands
controllers down to its children may hold no process itself. So containerd moves into a
leaf before it starts any shim (`supervise`):

    <scope>/                  trusted.delegate=1, subtree_control: what the containers need
        supervisor/           labkit-containerd, its shims, the runtimes they run
        labkit/<id>/          a container (cgroups.v2_base + the cgroupsPath /labkit/<id>)

Nothing of this where it is not needed: on cgroup v1, without systemd, or when `labkit lab
up` itself runs in a delegated cgroup (a Delegate=yes service). Where the scope is, is
written to RUN/labkit-containerd.cgroup, for `labkit lab reset` (its containers' cgroups).
"""

from __future__ import annotations

import hashlib
import os
import time

from labkit import paths

# labkit.runc.cgroups is imported in the functions, not here: the lab's package imports this
# module, and labkit.lab.launch must be able to load a student's cgroups.py under that name
# (a module imported before the launcher's finder is installed stays the reference).

SUPERVISOR = "supervisor"
RECORD = "labkit-containerd.cgroup"         # in paths.RUN: the scope's cgroup, for reset


def needed(root: str | None = None, *, v2: bool | None = None,
           systemd: bool | None = None, own: str | None = None) -> bool:
    """Must containerd be started in a delegated cgroup? Only on cgroup v2 under systemd, when
    we (`own`: this process's cgroup) are in no delegated cgroup already. `root`: where the
    v2 hierarchy is mounted (default /sys/fs/cgroup)."""
    from labkit.runc import cgroups
    if not (cgroups.is_v2() if v2 is None else v2):
        return False
    if not (cgroups.under_systemd() if systemd is None else systemd):
        return False
    own = cgroups.own_cgroups().get("", "/") if own is None else own
    return cgroups.delegated_ancestor(root or cgroups.V2_ROOT, own) is None


def unit() -> str:
    """The scope's name, one per lab (a test's private lab has a RUN of its own)."""
    return f"labkit-containerd-{hashlib.sha256(str(paths.RUN).encode()).hexdigest()[:8]}.scope"


def scoped(argv: list[str], name: str | None = None) -> list[str]:
    """`argv` run by systemd in a new delegated scope unit (man 1 systemd-run)."""
    return ["systemd-run", "--scope", f"--unit={name or unit()}", "--property=Delegate=yes",
            "--quiet", "--collect", "--", *argv]


def supervise(pid: int, name: str | None = None, root: str | None = None,
              timeout: float = 10) -> str:
    """Once systemd has put `pid` in the scope `name` (systemd-run asks, then execs the
    daemon), move it into the scope's leaf <scope>/supervisor; return the scope's directory.
    Raises RuntimeError if `pid` is not in that scope within `timeout` seconds."""
    from labkit.runc import cgroups
    root = root or cgroups.V2_ROOT
    name = name or unit()
    deadline = time.monotonic() + timeout
    while True:
        cgroup = cgroups.own_cgroups(pid).get("", "")
        if os.path.basename(cgroup) == name:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} is not in the systemd scope {name} "
                               f"after {timeout:.0f}s (its cgroup: {cgroup or 'none'})")
        time.sleep(0.01)
    return into_leaf(pid, os.path.normpath(root + "/" + cgroup))


def into_leaf(pid: int, scope: str) -> str:
    """Move `pid` into <scope>/supervisor (made if need be); return `scope`. Also for a
    containerd started again while the scope lives on (its shims keep it: `labkit lab down`
    leaves containers running), which systemd-run could not make a second time."""
    leaf = os.path.join(scope, SUPERVISOR)
    os.makedirs(leaf, exist_ok=True)
    with open(os.path.join(leaf, "cgroup.procs"), "w") as f:
        f.write(str(pid))
    return scope


def record(scope: str) -> None:
    (paths.RUN / RECORD).write_text(scope + "\n")


def recorded(alive: bool = False) -> str | None:
    """The scope's directory `labkit lab up` recorded, if there is one (`alive`: and it still
    exists)."""
    try:
        scope = (paths.RUN / RECORD).read_text().strip() or None
    except OSError:
        return None
    return None if scope is None or (alive and not os.path.isdir(scope)) else scope
