"""Volumes and bind mounts as OCI mounts: `-v`, `--mount`, anonymous volumes (moby's
volume/mounts parser and daemon/volumes.go), and how `docker inspect` shows them (Mounts).

A bind mount makes a host directory (or file) appear inside the container, the same inode,
not a copy: writes on either side are seen on the other. A named volume is a bind mount of
a directory dockerd manages (volumes.py); an anonymous one, the same under a random name.
The mounts come last in the spec (oci.container_spec), parents before children.
"""

from __future__ import annotations

import os
from typing import Callable


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
