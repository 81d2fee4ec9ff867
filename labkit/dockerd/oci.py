"""The OCI runtime spec (config.json) labkit-dockerd hands down for a container.

This mirrors what a real dockerd generates (shared/reference/dockerd-generated-config.json):
moby starts from a default spec (oci/defaults.go) and applies the container's settings
one by one (daemon/oci_linux.go). The parts, and why each is there:

- process: args = Entrypoint + Cmd; env = image Env overridden by the request's
  (imageconfig.py), plus HOSTNAME; cwd = WorkingDir; user; the 14 default capabilities
  (everything else, such as CAP_SYS_ADMIN, is dropped, which is what keeps a root process
  in a container contained), changed by --cap-add/--cap-drop.
- root: the rootfs path relative to the bundle: containerd mounts the snapshot there.
- hostname: the short id, in the container's own UTS namespace.
- mounts: the kernel filesystems every Linux program expects (/proc, /dev, /dev/pts,
  /sys read-only, cgroups read-only, mqueue, shm), then bind mounts of the three files
  dockerd writes per container (etcfiles.py): /etc/resolv.conf, /etc/hostname, /etc/hosts.
- linux.namespaces: mount, network, uts, pid, ipc — new ones; none has a path, so the
  runtime creates them. (No user namespace: root in the container is root on the host,
  limited by capabilities, masked paths and read-only paths.)
- maskedPaths / readonlyPaths: /proc and /sys files that leak host information or allow
  host changes are hidden (a /dev/null bind or an empty tmpfs) or made read-only.

- linux.cgroupsPath and linux.resources: the container's cgroup, "<parent>/<id>" in every
  hierarchy (dockerd uses /docker/<id>, labkit /labkit/<id>), with the limits of
  `docker run -m/--pids-limit/--cpus/--cpu-shares`, and the device rules dockerd sends
  (deny everything, allow the basic character devices; the runtime adds its defaults).

- a cgroup namespace (HostConfig.CgroupnsMode "private", dockerd 20.10's default on a
  cgroup v2 host; "host", the default on v1, adds none): inside, /proc/self/cgroup says
  "0::/" and the runtime's fresh cgroup2 mount at /sys/fs/cgroup shows the container's own
  cgroup as the root, so `cat /sys/fs/cgroup/memory.max` prints the container's limit.

- volumes: bind mounts of host paths (-v, --mount type=bind), volumes and tmpfs mounts,
  last (mounts.py makes them).
- network: a namespace of its own (the runtime makes it, with loopback up; dockerd adds a
  veth pair between create and start: network.py), the host's (--network host: no
  namespace entry), or another container's (a namespace path).

- linux.seccomp: the system-call filter, Docker's default profile resolved for this
  container's capabilities (security.py, seccomp_default.py), a profile of the user's, or
  none (--security-opt seccomp=unconfined). process.noNewPrivileges with
  --security-opt no-new-privileges.

Left out for now: rlimits. (No networking hooks: dockerd configures the namespace between
Tasks.Create and Tasks.Start, as dockerd 28 does: network.py.)
"""

from __future__ import annotations

import os

from labkit import capabilities

DEFAULT_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

# Every capability Linux knows (capabilities(7)), for --cap-add ALL and name checks.
ALL_CAPABILITIES = list(capabilities.NAMES)

MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
]

READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def default_mounts() -> list[dict]:
    """The kernel filesystems, in the order (and with the options) dockerd uses."""
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
    ]


# The device cgroup rules a real dockerd sends (see the reference config): deny all, allow
# null, zero, full, random, urandom, tty, console, and explicitly deny /dev/net/tun (10:229).
DEVICE_RULES = [{"allow": False, "access": "rwm"}] + [
    {"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
    for major, minor in ((1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1))
] + [{"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]


def cgroup_version() -> int:
    """2 when /sys/fs/cgroup is the unified hierarchy (it has cgroup.controllers), else 1."""
    return 2 if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else 1


def cgroupns_mode(host_config: dict) -> str:
    """HostConfig.CgroupnsMode, "private" or "host"; unset means dockerd 20.10's default:
    private on cgroup v2 (the container sees its own cgroup as the root), host on v1."""
    mode = host_config.get("CgroupnsMode") or ("private" if cgroup_version() == 2 else "host")
    if mode not in ("private", "host"):
        raise ValueError(f"invalid cgroup namespace mode: {mode}")
    return mode


def resources(host_config: dict) -> dict:
    """linux.resources from the limits in a HostConfig (zero means "no limit", as in Docker)."""
    def number(key: str) -> int:
        value = host_config.get(key) or 0
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"invalid HostConfig.{key}: expected an integer")
        return value

    out: dict = {"devices": [dict(rule) for rule in DEVICE_RULES]}
    # BEGIN SOLUTION chapter="09" hint="OCI runtime spec, config-linux.md 'Control groups': linux.resources.memory.limit, pids.limit, cpu.shares/quota/period; 0 means no limit"
    # TODO: add out["memory"] = {"limit": Memory} (refuse a negative Memory or one under 6 MiB),
    # TODO: out["pids"] = {"limit": PidsLimit} when PidsLimit > 0, and out["cpu"] when any
    # TODO: CPU option is set: shares from CpuShares; NanoCpus as period 100000 and quota
    # TODO: NanoCpus * 100000 // 10**9; CpuQuota and CpuPeriod as given (NanoCpus with either
    # TODO: is refused); check the ranges with _check_cpu(...)
    # HINT: refusals are ValueErrors (create makes them 400s): "Minimum memory limit allowed is 6MB", "conflicting options: Nano CPUs and CPU Period/Quota cannot both be set"
    # HINT: --cpus 1.5 arrives as NanoCpus 1500000000: 150000us of CPU time per 100000us period
    # HINT: number(key) reads an integer field of the HostConfig (absent or null: 0)
    memory = number("Memory")
    if memory < 0 or 0 < memory < 6 * 1024 * 1024:
        raise ValueError("Minimum memory limit allowed is 6MB")
    if memory:
        out["memory"] = {"limit": memory}
    swap = number("MemorySwap")    # memory + swap; -1: unlimited swap
    if swap and memory:
        if 0 < swap < memory:
            raise ValueError("Minimum memoryswap limit should be larger than memory limit, "
                             "see usage")
        out["memory"]["swap"] = swap
    pids = number("PidsLimit")
    if pids > 0:
        out["pids"] = {"limit": pids}
    cpu: dict = {}
    if number("CpuShares"):
        cpu["shares"] = number("CpuShares")
    nano = number("NanoCpus")
    if nano and (number("CpuQuota") or number("CpuPeriod")):
        raise ValueError("conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
    _check_cpu(nano, number("CpuPeriod"), number("CpuQuota"), number("CpuShares"))
    if nano:  # --cpus=1.5 -> 150000us of CPU time per 100000us period
        cpu["period"] = 100000
        cpu["quota"] = nano * 100000 // 10**9
    if number("CpuQuota"):
        cpu["quota"] = number("CpuQuota")
    if number("CpuPeriod"):
        cpu["period"] = number("CpuPeriod")
    if cpu:
        out["cpu"] = cpu
    return out
    # END SOLUTION


def _check_cpu(nano: int, period: int, quota: int, shares: int) -> None:
    """The ranges moby checks at create (daemon/daemon_unix.go verifyPlatformContainer-
    Resources), so that a bad value is a 400 now, not a failed start later."""
    cpus = os.cpu_count() or 1
    if nano and not 10**7 <= nano <= cpus * 10**9:
        raise ValueError(f"Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} "
                         "CPUs available")
    if period and not 1000 <= period <= 1000000:
        raise ValueError("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than "
                         "1 second (i.e. 1000000)")
    if quota and quota < 1000:
        raise ValueError("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if shares < 0:
        raise ValueError("invalid CPU shares: it must not be negative")


def parse_user(user: str) -> tuple[int, int]:
    """"", "root", "0", "1000", "1000:1000" -> (uid, gid).

    Names other than root would need the image's /etc/passwd, which dockerd reads from
    the mounted rootfs; labkit only takes numbers for now and says so.
    """
    if not user or user == "root":
        return 0, 0
    name, _, group = user.partition(":")
    try:
        uid = 0 if name == "root" else int(name)
        gid = (0 if group == "root" else int(group)) if group else (uid if name != "root" else 0)
    except ValueError:
        raise ValueError(f"unable to find user {user}: labkit-dockerd accepts only numeric "
                         "user and group ids (or root)") from None
    if uid < 0 or gid < 0:
        raise ValueError(f"invalid user {user!r}: ids must not be negative")
    return uid, gid


def group_ids(group_add: list | None) -> list[int]:
    """HostConfig.GroupAdd (`--group-add 10 --group-add 1000`) -> process.user.additionalGids.

    Docker also takes group names, looked up in the image's /etc/group; like parse_user,
    labkit takes numbers only and says so."""
    gids = []
    for group in group_add or []:
        if not isinstance(group, str):
            raise ValueError("invalid HostConfig.GroupAdd: expected a list of strings")
        try:
            gid = int(group)
        except ValueError:
            raise ValueError(f"Unable to find group {group}: labkit-dockerd accepts only "
                             "numeric group ids in --group-add") from None
        if not 0 <= gid < 2**32 - 1:
            raise ValueError(f"invalid group id {group}: out of range")
        if gid not in gids:
            gids.append(gid)
    return gids


def capabilities(cap_add: list[str] | None, cap_drop: list[str] | None) -> list[str]:
    """Docker's 14 defaults, changed by --cap-add / --cap-drop ("NET_ADMIN", "ALL", ...)."""
    def normalize(names: list[str] | None) -> list[str]:
        out = []
        for name in names or []:
            if not isinstance(name, str):
                raise ValueError(f"invalid capability {name!r}")
            upper = name.upper()
            cap = upper if upper.startswith("CAP_") or upper == "ALL" else "CAP_" + upper
            if cap != "ALL" and cap not in ALL_CAPABILITIES:
                raise ValueError(f"unknown capability: \"{name}\"")
            out.append(cap)
        return out

    add, drop = normalize(cap_add), normalize(cap_drop)
    caps = [] if "ALL" in drop else [c for c in DEFAULT_CAPABILITIES if c not in drop]
    for cap in (ALL_CAPABILITIES if "ALL" in add else add):
        if cap not in caps and cap not in drop:
            caps.append(cap)
    return caps


def process_spec(*, args: list[str], env: list[str], cwd: str, user: str, tty: bool,
                 console_size: tuple[int, int] | None = None,
                 caps: list[str] | None = None, no_new_privileges: bool = False,
                 additional_gids: list[int] | None = None) -> dict:
    """The spec's `process`: for a container's init, and alone for `docker exec`."""
    uid, gid = parse_user(user)
    caps = list(DEFAULT_CAPABILITIES) if caps is None else caps
    process: dict = {
        "terminal": tty,
        "user": {"uid": uid, "gid": gid},
        "args": args,
        "env": env,
        "cwd": cwd or "/",
        "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
        "oomScoreAdj": 0,
    }
    if additional_gids:
        process["user"]["additionalGids"] = list(additional_gids)
    if no_new_privileges:
        process["noNewPrivileges"] = True
    if tty and console_size and all(console_size):
        process["consoleSize"] = {"height": console_size[0], "width": console_size[1]}
    return process


def container_spec(*, args: list[str], env: list[str], cwd: str, user: str, hostname: str,
                   tty: bool, etc_files: dict[str, str], read_only_rootfs: bool = False,
                   console_size: tuple[int, int] | None = None, cgroups_path: str = "",
                   limits: dict | None = None, extra_mounts: list[dict] | None = None,
                   network: str = "private", caps: list[str] | None = None,
                   seccomp: dict | None = None, no_new_privileges: bool = False,
                   cgroupns: bool = False,
                   additional_gids: list[int] | None = None) -> dict:
    """The config.json for one container.

    `etc_files` maps /etc/resolv.conf, /etc/hostname and /etc/hosts to the files dockerd
    wrote for this container on the host. `extra_mounts` come last (volumes). `network`:
    "private" (a new network namespace; network.py plugs it in), "host" (the host's: no namespace
    entry at all), or a path such as /proc/<pid>/ns/net (join another container's).
    `seccomp` is linux.seccomp (security.seccomp_for), None for no filter.
    """
    process = process_spec(args=args, env=env, cwd=cwd, user=user, tty=tty,
                           console_size=console_size, caps=caps,
                           no_new_privileges=no_new_privileges, additional_gids=additional_gids)
    mounts = default_mounts()
    for destination in ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts"):
        if destination in etc_files:
            mounts.append({"destination": destination, "type": "bind",
                           "source": etc_files[destination], "options": ["rbind", "rprivate"]})
    mounts += [{k: v for k, v in m.items() if k != "volume"} for m in extra_mounts or []]
    namespaces: list[dict] = [{"type": "mount"}]
    if network == "private":
        namespaces.append({"type": "network"})
    elif network != "host":
        namespaces.append({"type": "network", "path": network})
    namespaces += [{"type": t} for t in ("uts", "pid", "ipc")]
    if cgroupns:
        namespaces.append({"type": "cgroup"})
    linux: dict = {
        "namespaces": namespaces,
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if network == "private":
        # net.* sysctls belong to a network namespace: set them only in one of our own
        linux["sysctl"] = {"net.ipv4.ip_unprivileged_port_start": "0",
                           "net.ipv4.ping_group_range": "0 2147483647"}
    if limits is not None:
        linux["resources"] = limits
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path
    if seccomp is not None:
        linux["seccomp"] = seccomp
    return {
        "ociVersion": "1.0.2-dev",
        "process": process,
        "root": {"path": "rootfs", "readonly": read_only_rootfs},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
