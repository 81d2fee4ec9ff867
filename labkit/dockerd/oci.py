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

- volumes: bind mounts of host paths (-v, --mount type=bind) and tmpfs mounts, last.
- network: a namespace of its own (only loopback: labkit has no bridge yet), the host's
  (--network host: no namespace entry), or another container's (a namespace path).

- linux.seccomp: the system-call filter, Docker's default profile resolved for this
  container's capabilities (security.py, seccomp_default.py), a profile of the user's, or
  none (--security-opt seccomp=unconfined). process.noNewPrivileges with
  --security-opt no-new-privileges.

Left out for now: rlimits, networking hooks.
"""

from __future__ import annotations

import os
from typing import Callable

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


def resources(host_config: dict) -> dict:
    """linux.resources from the limits in a HostConfig (zero means "no limit", as in Docker)."""
    def number(key: str) -> int:
        value = host_config.get(key) or 0
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"invalid HostConfig.{key}: expected an integer")
        return value

    out: dict = {"devices": [dict(rule) for rule in DEVICE_RULES]}
    memory = number("Memory")
    if memory < 0 or 0 < memory < 6 * 1024 * 1024:
        raise ValueError("Minimum memory limit allowed is 6MB")
    if memory:
        out["memory"] = {"limit": memory}
    pids = number("PidsLimit")
    if pids > 0:
        out["pids"] = {"limit": pids}
    cpu: dict = {}
    if number("CpuShares"):
        cpu["shares"] = number("CpuShares")
    nano = number("NanoCpus")
    if nano and (number("CpuQuota") or number("CpuPeriod")):
        raise ValueError("conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
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
                 caps: list[str] | None = None, no_new_privileges: bool = False) -> dict:
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
    if no_new_privileges:
        process["noNewPrivileges"] = True
    if tty and console_size and all(console_size):
        process["consoleSize"] = {"height": console_size[0], "width": console_size[1]}
    return process


def volume_mounts(binds: list[str] | None, mounts: list[dict] | None,
                  volume_path: Callable[[str], str] | None = None) -> list[dict]:
    """OCI mounts for `docker run -v /host:/ctr[:ro]` or `-v name:/ctr` (HostConfig.Binds)
    and `--mount type=bind|volume|tmpfs,...` (HostConfig.Mounts). Raises ValueError for bad
    ones. `volume_path(name)` gives a named volume's directory (see volumes.py).

    A bind mount makes a host directory (or file) appear inside the container, the same
    inode, not a copy: writes on either side are seen on the other. A named volume is a
    bind mount of a directory dockerd manages. Each mount gets a "volume" key (the name)
    when it is one, for `docker inspect` and `docker volume rm`.
    """
    out: list[dict] = [_from_bind_string(bind, volume_path) for bind in binds or []]
    for m in mounts or []:
        if not isinstance(m, dict):
            raise ValueError("invalid HostConfig.Mounts entry: expected an object")
        kind, target = m.get("Type"), m.get("Target")
        if kind == "bind":
            out.append(_bind(m.get("Source") or "", target or "", bool(m.get("ReadOnly")),
                             create=False))
        elif kind == "volume":  # no Source: an anonymous volume (volume_path("") makes one)
            name = m.get("Source") or ""
            if volume_path is None or not isinstance(name, str):
                raise ValueError("a volume mount needs the volume's name as its source")
            source = volume_path(name)
            out.append(_bind(source, target or "", bool(m.get("ReadOnly")), create=False,
                             volume=name or os.path.basename(os.path.dirname(source))))
        elif kind == "tmpfs":
            out.append(_tmpfs(target or "", m.get("TmpfsOptions") or {}))
        else:
            raise ValueError(f"mount type {kind!r} is not supported by labkit-dockerd "
                             "(bind, volume and tmpfs are)")
    return in_mount_order(out)


def anonymous_volume_mounts(volumes: dict | None, taken: list[dict],
                            volume_path: Callable[[str], str]) -> list[dict]:
    """A volume of its own for each destination of Config.Volumes (`-v /data`, the image's
    VOLUME) that no -v/--mount covers: moby's anonymous volumes. volume_path("") creates
    one under a random name and gives its directory, <root>/volumes/<name>/_data."""
    covered = {os.path.normpath(m["destination"]) for m in taken}
    out = []
    for destination in sorted(volumes or {}):
        _check_destination(destination)
        if os.path.normpath(destination) in covered:
            continue
        source = volume_path("")
        out.append(_bind(source, destination, False, create=False,
                         volume=os.path.basename(os.path.dirname(source))))
    return out


def in_mount_order(out: list[dict]) -> list[dict]:
    """Refuse two mounts on one destination; sort the rest so that parents come first."""
    destinations = [m["destination"] for m in out]
    for d in destinations:
        if destinations.count(d) > 1:
            raise ValueError(f"Duplicate mount point: {d}")
    # The runtime mounts in list order, and a mount hides whatever was mounted below its
    # destination before it: /v must come before /v/link/sub. The docker CLI sends -v in no
    # particular order (a Go map), so, as dockerd does, sort by the destination's depth
    # (its number of path components); a stable sort keeps the given order among equals.
    out.sort(key=lambda m: len(os.path.normpath(m["destination"]).strip("/").split("/")))
    return out


def _from_bind_string(bind: str, volume_path: Callable[[str], str] | None) -> dict:
    """One `-v` (HostConfig.Binds entry): "/host:/ctr[:modes]" or "name:/ctr[:modes]"."""
    if not isinstance(bind, str):
        raise ValueError(f"invalid bind {bind!r}: expected \"/host/path:/container/path[:ro]\"")
    parts = bind.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ValueError(f"invalid volume specification: '{bind}'")
    source, destination = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 else []
    volume = None
    if not source.startswith("/"):
        if volume_path is None:
            raise ValueError(f"invalid volume specification: '{bind}': named volumes are "
                             "not available here, give an absolute host path")
        volume, source = source, volume_path(source)
    unknown = set(modes) - {"ro", "rw", "z", "Z", "rprivate", "private", "rshared",
                            "shared", "rslave", "slave", "nocopy"}
    if unknown:
        raise ValueError(f"invalid mode: {','.join(sorted(unknown))} in '{bind}'")
    return _bind(source, destination, "ro" in modes, create=True, volume=volume)


def _tmpfs(target: str, tmpfs: dict) -> dict:
    """One `--mount type=tmpfs`: a fresh tmpfs, its size and mode from TmpfsOptions."""
    _check_destination(target)
    options = ["nosuid", "nodev", "noexec"]
    for key, option, fmt in (("SizeBytes", "size", "d"), ("Mode", "mode", "o")):
        value = tmpfs.get(key)
        if value in (None, 0):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"invalid TmpfsOptions.{key}: expected a positive integer")
        options.append(f"{option}={value:{fmt}}")
    return {"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options}


def _check_destination(destination: str) -> None:
    if not destination.startswith("/") or destination.rstrip("/") == "":
        raise ValueError(f"invalid mount destination {destination!r}: it must be an absolute "
                         "path, and not /")


def _bind(source: str, destination: str, read_only: bool, create: bool,
          volume: str | None = None) -> dict:
    _check_destination(destination)
    if not source.startswith("/"):
        raise ValueError(f"invalid mount source {source!r}: it must be an absolute path")
    if not os.path.exists(source):
        if not create:  # --mount wants it to exist; -v creates a directory, as Docker does
            raise ValueError(f"invalid mount config for type \"bind\": bind source path does "
                             f"not exist: {source}")
        os.makedirs(source, exist_ok=True)
    options = ["rbind", "rprivate"] + (["ro"] if read_only else [])
    mount = {"destination": destination, "type": "bind", "source": source, "options": options}
    if volume:
        mount["volume"] = volume  # not an OCI key: removed before the spec is written
    return mount


def container_spec(*, args: list[str], env: list[str], cwd: str, user: str, hostname: str,
                   tty: bool, etc_files: dict[str, str], read_only_rootfs: bool = False,
                   console_size: tuple[int, int] | None = None, cgroups_path: str = "",
                   limits: dict | None = None, extra_mounts: list[dict] | None = None,
                   network: str = "private", caps: list[str] | None = None,
                   seccomp: dict | None = None, no_new_privileges: bool = False) -> dict:
    """The config.json for one container.

    `etc_files` maps /etc/resolv.conf, /etc/hostname and /etc/hosts to the files dockerd
    wrote for this container on the host. `extra_mounts` come last (volumes). `network`:
    "private" (a new network namespace: only loopback), "host" (the host's: no namespace
    entry at all), or a path such as /proc/<pid>/ns/net (join another container's).
    `seccomp` is linux.seccomp (security.seccomp_for), None for no filter.
    """
    process = process_spec(args=args, env=env, cwd=cwd, user=user, tty=tty,
                           console_size=console_size, caps=caps,
                           no_new_privileges=no_new_privileges)
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


def mount_points(mounts: list[dict]) -> list[dict]:
    """The "Mounts" of `docker inspect` for the volume mounts of a container."""
    out = []
    for m in mounts:
        point = {"Type": "volume" if "volume" in m else m["type"],
                 "Source": m["source"] if m["type"] == "bind" else "",
                 "Destination": m["destination"], "Mode": "ro" if "ro" in m["options"] else "",
                 "RW": "ro" not in m["options"],
                 "Propagation": "rprivate" if m["type"] == "bind" and "volume" not in m else ""}
        if "volume" in m:
            point.update(Name=m["volume"], Driver="local")
        out.append(point)
    return out
