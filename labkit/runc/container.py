"""A container as the runtime remembers it between commands: <root>/<id>/state.json.

Every labkit-runc command is a short-lived process, so nothing survives in memory: `create`
writes state.json and exits, and `start`, `state`, `kill` and `delete` read it back. The
directory also holds `exec.fifo` between create and start (see start.py).

The status is never stored, it is DERIVED each time from the kernel (INTERFACES.md §2.3):

    init pid gone, a zombie, or reused by another process  ->  stopped
    exec.fifo still present                                 ->  created
    its cgroup frozen (pause.py)                            ->  paused
    otherwise                                               ->  running

"Reused" is detected with the process start time (field 22 of /proc/<pid>/stat, in clock
ticks since boot): a new process with the same pid has a different start time.
"""

from __future__ import annotations

import os
import time

from labkit import procfs, quickjson
from labkit.runc import cgroups
from labkit.runc.log import ContainerError

OCI_VERSION = "1.0.2"
STATE_FILE = "state.json"
FIFO = "exec.fifo"

# runc's rule for container ids: ASCII letters, digits, _ + - . (and not "." or "..")
_ID_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(container_id: str) -> None:
    if not container_id or not _ID_CHARACTERS.issuperset(container_id) \
            or container_id in (".", ".."):
        raise ContainerError(f"invalid id format: {container_id}")


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class Container:
    """A container as state.json records it. (A plain class, not a dataclass: importing
    dataclasses would cost every labkit-runc command ~7 ms; labkit.procfs says more.)"""

    # what state.json holds, in this order (state_dir is where it is, not in it)
    FIELDS = ("id", "bundle", "rootfs", "pid", "start_time", "created", "owner", "annotations",
              "config", "cgroup_paths", "cgroup_created", "host_rootfs_mounts")

    def __init__(self, id: str, state_dir: str, bundle: str, rootfs: str, pid: int = 0,
                 start_time: int = 0, created: str = "", owner: str = "",
                 annotations: dict | None = None, config: dict | None = None,
                 cgroup_paths: dict[str, str] | None = None,
                 cgroup_created: list[str] | None = None,
                 host_rootfs_mounts: list[int] | None = None):
        self.id = id
        self.state_dir = state_dir          # <root>/<id>
        self.bundle = bundle
        self.rootfs = rootfs
        self.pid = pid                      # init's pid in the runtime's pid namespace (the host's)
        self.start_time = start_time        # init's start time, to detect pid reuse
        self.created = created
        self.owner = owner
        self.annotations = annotations or {}
        self.config = config or {}
        # cgroup directories (one per v1 hierarchy, or one v2 directory) and the ones we made
        self.cgroup_paths = cgroup_paths or {}
        self.cgroup_created = cgroup_created or []
        # only without a mount namespace of its own: the ids of the mounts at `rootfs` before
        # create (what init mounts on top, in the host's table, delete detaches)
        self.host_rootfs_mounts = host_rootfs_mounts

    # --- persistence ------------------------------------------------------------------
    @staticmethod
    def load(root: str, container_id: str) -> "Container":
        check_id(container_id)
        state_dir = os.path.join(root, container_id)
        try:
            with open(os.path.join(state_dir, STATE_FILE)) as f:
                data = quickjson.load(f)
        except FileNotFoundError:
            # the wording the shim and dockerd look for
            raise ContainerError("container does not exist") from None
        except (OSError, ValueError) as e:
            raise ContainerError(f"cannot read state of container {container_id}: {e}") from None
        return Container(state_dir=state_dir,
                         **{k: v for k, v in data.items() if k in Container.FIELDS})

    def save(self) -> None:
        """Write state.json atomically (write a temporary file, then rename over)."""
        data = {name: getattr(self, name) for name in self.FIELDS}
        tmp = os.path.join(self.state_dir, STATE_FILE + ".tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            quickjson.dump(data, f)
        os.rename(tmp, os.path.join(self.state_dir, STATE_FILE))

    def remove_state(self) -> None:
        """Remove <root>/<id>: its files (state.json, exec.fifo until `start`, a state.json.tmp
        left by a crash), then itself; nothing there is no error. By hand, not shutil.rmtree:
        importing shutil costs each command ~2 ms, for a directory that holds three files."""
        try:
            for name in os.listdir(self.state_dir):
                os.unlink(os.path.join(self.state_dir, name))
            os.rmdir(self.state_dir)
        except FileNotFoundError:
            pass                            # removed already (a concurrent delete)
        except OSError:                     # something we did not put there: the general tool
            import shutil
            shutil.rmtree(self.state_dir, ignore_errors=True)

    @property
    def fifo_path(self) -> str:
        return os.path.join(self.state_dir, FIFO)

    # --- status -------------------------------------------------------------------------
    def init_alive(self) -> bool:
        """Is our init still the process at self.pid (not dead, not a zombie, not reused)?"""
        if self.pid <= 0:
            return False
        stat = procfs.stat(self.pid)            # /proc/<pid>/stat, read by labkit.procfs
        if stat is None:
            return False
        start_time, state = stat.start_time, stat.state
        # BEGIN SOLUTION chapter="04" hint="man 5 proc, /proc/pid/stat: field 3 (state) and field 22 (starttime)"
        # TODO: alive = not a zombie (Z) nor dead (X, x), and the same start time as recorded
        return state not in ("Z", "X", "x") and start_time == self.start_time
        # END SOLUTION

    def status(self) -> str:
        # BEGIN SOLUTION chapter="04" hint="INTERFACES.md §2.3, 'Status derivation'"
        # TODO: derive "stopped", "created" or "running" from the kernel and exec.fifo
        # HINT: self.init_alive() checks dead/zombie/reused; self.fifo_path exists until `start`
        if not self.init_alive():
            return "stopped"
        if os.path.exists(self.fifo_path):
            return "created"
        if self.cgroup_paths and cgroups.is_frozen(self.cgroup_paths):
            return "paused"
        return "running"
        # END SOLUTION

    def oci_state(self) -> dict:
        """The state object of the OCI runtime spec, as `runc state` prints it."""
        status = self.status()
        state = {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            # runc reports pid 0 once the container has stopped
            "pid": self.pid if status != "stopped" else 0,
            "status": status,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
        }
        if self.annotations:
            state["annotations"] = self.annotations
        return state


def list_containers(root: str) -> list[Container]:
    """Every container under `root` (directories without a readable state are skipped)."""
    found = []
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    for name in names:
        if os.path.exists(os.path.join(root, name, STATE_FILE)):
            try:
                found.append(Container.load(root, name))
            except ContainerError:
                continue
    return found
