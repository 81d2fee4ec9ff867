"""`docker version` and `docker info`: what the daemon says about itself and the host
(moby's daemon/info.go, info_unix.go)."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import threading
from pathlib import Path

from labkit.dockerd import oci
from labkit.dockerd.core import BUILTIN_RUNTIMES, VERSION, DaemonCore
from labkit.dockerd.errors import DaemonError
from labkit.dockerd.httputils import API_VERSION, MIN_API_VERSION
from labkit.dockerd.jsonlog import rfc3339nano
from labkit.dockerd.remote import RemoteError

log = logging.getLogger("labkit.dockerd")


class System(DaemonCore):
    """The Daemon's version and info (mixed into labkit.dockerd.daemon.Daemon)."""

    def version(self) -> dict:
        try:
            containerd_version = self.ctr.version()
        except RemoteError as e:
            containerd_version = f"unreachable ({e.code})"
        runtime = self.config.default_runtime
        kernel = platform.release()
        return {
            "Platform": {"Name": "labkit"},
            "Components": [
                {"Name": "Engine", "Version": VERSION,
                 "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                             "Arch": _arch(), "Os": "linux", "KernelVersion": kernel,
                             "GitCommit": "labkit", "GoVersion": _python(),
                             "Experimental": "false"}},
                {"Name": "labkit-containerd", "Version": containerd_version,
                 "Details": {"Address": self.config.containerd, "GitCommit": "labkit"}},
                {"Name": runtime, "Version": runtime_version(self._safe_binary(runtime))[0],
                 "Details": {"GitCommit": runtime_version(self._safe_binary(runtime))[1],
                             "Binary": self._safe_binary(runtime)}},
            ],
            "Version": VERSION,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "labkit",
            "GoVersion": _python(),
            "Os": "linux",
            "Arch": _arch(),
            "KernelVersion": kernel,
            "BuildTime": "",
        }

    def _safe_binary(self, name: str) -> str:
        try:
            return self._runtime_binary(name)
        except DaemonError:
            return name

    def info(self) -> dict:
        with self._lock:
            states = [c.State.Status for c in self._containers.values()]
        try:
            images = len({r.config_digest for r in self.images.all()})
        except DaemonError:
            images = 0
        runtimes = {n: {"path": self._safe_binary(n)}
                    for n in {**BUILTIN_RUNTIMES, **self.config.runtimes}}
        default = self.config.default_runtime   # a key of Runtimes (main.py sees to it)
        try:
            containerd_version = self.ctr.version()
        except RemoteError:
            containerd_version = ""
        limits = _cgroup_limits()
        return {
            "ID": "labkit", "Name": platform.node(),
            "Containers": len(states),
            "ContainersRunning": states.count("running"),
            "ContainersPaused": states.count("paused"),
            "ContainersStopped": len(states) - states.count("running") - states.count("paused"),
            "Images": images,
            "Driver": self.ctr.snapshotter, "DriverStatus": [],
            "Plugins": {"Volume": [], "Network": ["bridge", "host", "null"],
                        "Authorization": None, "Log": ["json-file"]},
            "MemoryLimit": limits["memory"], "SwapLimit": limits["swap"],
            "CpuCfsPeriod": limits["cpu"], "CpuCfsQuota": limits["cpu"],
            "CPUShares": limits["cpu"], "CPUSet": limits["cpuset"],
            "PidsLimit": limits["pids"], "OomKillDisable": False, "KernelMemory": False,
            "KernelMemoryTCP": False,
            "IPv4Forwarding": _ip_forward(), "Debug": log.isEnabledFor(logging.DEBUG),
            "NFd": len(os.listdir("/proc/self/fd")), "NGoroutines": threading.active_count(),
            "SystemTime": rfc3339nano(), "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs", "CgroupVersion": _cgroup_version(),
            "KernelVersion": platform.release(), "OperatingSystem": _os_name(),
            "OSVersion": "", "OSType": "linux", "Architecture": platform.machine(),
            "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(),
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"Mirrors": list(self.config.mirrors), "IndexConfigs": {},
                               "InsecureRegistryCIDRs": ["127.0.0.0/8"]},
            "DockerRootDir": str(self.config.root), "HttpProxy": "", "HttpsProxy": "",
            "NoProxy": "", "Labels": [], "ExperimentalBuild": False,
            "ServerVersion": VERSION, "Runtimes": runtimes,
            "DefaultRuntime": default,
            "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False, "NodeID": "",
                      "NodeAddr": "", "RemoteManagers": None},
            "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "",
            "ContainerdCommit": {"ID": containerd_version},
            "RuncCommit": {"ID": runtime_version(runtimes.get(default, {}).get("path", ""))[1]},
            "InitCommit": {"ID": ""},
            "SecurityOptions": ["name=seccomp,profile=builtin"], "Warnings": [],
        }


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def _python() -> str:
    return "python" + platform.python_version()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_version() -> str:
    return str(oci.cgroup_version())


_VERSIONS: dict[str, tuple[str, str]] = {}


def runtime_version(binary: str) -> tuple[str, str]:
    """(version, commit) from `<runtime> --version`, as dockerd asks runc: "runc version
    1.1.5" and "commit: ..." lines (INTERFACES.md §2.2). Asked once per binary."""
    if binary not in _VERSIONS:
        version = commit = ""
        try:
            out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            words = line.split()
            if len(words) >= 3 and words[1] == "version" and not version:
                version = words[2]
            elif line.startswith("commit:"):
                commit = line.split(":", 1)[1].strip()
        _VERSIONS[binary] = (version, commit or version)
    return _VERSIONS[binary]


def _cgroup_limits() -> dict[str, bool]:
    """Which limits the kernel's cgroups can enforce (moby's pkg/sysinfo): the controllers
    of cgroup v2's root, or v1's mounted hierarchies."""
    root = Path("/sys/fs/cgroup")
    try:
        if (root / "cgroup.controllers").exists():
            have = set((root / "cgroup.controllers").read_text().split())
            swap = any(root.glob("*/memory.swap.max"))
        else:
            have = {p.name for p in root.iterdir() if p.is_dir()}
            swap = (root / "memory" / "memory.memsw.limit_in_bytes").exists()
    except OSError:
        have, swap = set(), False
    return {"memory": "memory" in have, "swap": "memory" in have and swap,
            "cpu": "cpu" in have, "cpuset": "cpuset" in have, "pids": "pids" in have}


def _ip_forward() -> bool:
    """Whether the host forwards IPv4 between interfaces (labkit never changes it)."""
    try:
        return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    except OSError:
        return False
