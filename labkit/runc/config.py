"""Reading a bundle's config.json (the OCI runtime spec) and checking what labkit-runc needs.

A bundle is a directory holding `config.json` and, usually, the root filesystem (`rootfs/`).
The spec is kept as the plain dict JSON gives (the names then match the spec text a
student has open next to the code); this module checks the fields the runtime relies on and
turns mistakes into one clear error, never a KeyError deep inside the container's init.
"""

from __future__ import annotations

import os

from labkit import quickjson   # json's parser, without json's imports (see there)
from labkit.mountopts import PROPAGATION  # rootfsPropagation's values: "rprivate", "shared" …
from labkit.namespaces import NAMESPACES  # linux.namespaces[].type -> (CLONE_NEW* flag, ns file)
from labkit.runc.log import ContainerError

# the spec: config.json as a dict, str keys, JSON values (dict[str, typing.Any]; not spelt so,
# as importing typing would cost every `create` ~2 ms)
Spec = dict


def load(bundle: str) -> Spec:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            spec = quickjson.load(f)
    except FileNotFoundError:
        raise ContainerError(f"cannot read {path}: no such file or directory") from None
    except ValueError as e:
        raise ContainerError(f"cannot parse {path}: {e}") from None
    except OSError as e:
        raise ContainerError(f"cannot read {path}: {e.strerror}") from None
    validate(spec, path)
    return spec


def validate(spec: Spec, where: str = "config.json") -> None:
    def bad(msg: str) -> ContainerError:
        return ContainerError(f"{where}: {msg}")

    if not isinstance(spec, dict):
        raise bad("not a JSON object")
    process = spec.get("process")
    if not isinstance(process, dict):
        raise bad("process is missing")
    check_process(process, where)
    root = spec.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str) or not root["path"]:
        raise bad("root.path is missing")
    for i, m in enumerate(spec.get("mounts") or []):
        if not isinstance(m, dict) or not isinstance(m.get("destination"), str):
            raise bad(f"mounts[{i}].destination is missing")
        if not os.path.isabs(m["destination"]):
            raise bad(f"mounts[{i}].destination {m['destination']!r} is not an absolute path")
    for i, ns in enumerate((spec.get("linux") or {}).get("namespaces") or []):
        if not isinstance(ns, dict) or ns.get("type") not in NAMESPACES:
            raise bad(f"linux.namespaces[{i}]: unknown namespace type {ns.get('type')!r}"
                      if isinstance(ns, dict) else f"linux.namespaces[{i}] is not an object")
        if ns["type"] == "user" and not ns.get("path"):
            linux = spec.get("linux") or {}
            for key in ("uidMappings", "gidMappings"):
                maps = linux.get(key)
                if not isinstance(maps, list) or not maps or not all(
                        isinstance(m, dict) and all(isinstance(m.get(k), int) and m[k] >= 0
                                                    for k in ("containerID", "hostID", "size"))
                        for m in maps):
                    raise bad(f"a new user namespace needs linux.{key}: a list of "
                              "{containerID, hostID, size}")
    if spec.get("hostname") and not private_namespace(spec, "uts"):
        # runc's wording (and runc's check: a uts namespace listed, new or joined by path,
        # as long as it is not the runtime's own: the hostname must not rename the host)
        raise bad("unable to set hostname without a private UTS namespace")
    linux = spec.get("linux") or {}
    if linux.get("rootfsPropagation") and linux["rootfsPropagation"] not in PROPAGATION:
        raise bad(f"linux.rootfsPropagation {linux['rootfsPropagation']!r} is not one of "
                  + ", ".join(sorted(PROPAGATION)))
    if (linux.get("maskedPaths") or linux.get("readonlyPaths")) and "mount" not in namespaces(spec):
        # without a mount namespace, masking /proc/kcore would mask the HOST's (runc's wording)
        raise bad("unable to restrict sys entries without a private MNT namespace")


def check_process(process: dict, where: str = "process") -> None:
    """The checks shared by config.json's process and `exec --process`."""
    args = process.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise ContainerError(f"{where}: process.args must be a non-empty list of strings")
    if not isinstance(process.get("cwd", "/"), str) or not os.path.isabs(process.get("cwd", "/")):
        raise ContainerError(f"{where}: process.cwd must be an absolute path")
    env = process.get("env") or []
    if not all(isinstance(e, str) and "=" in e for e in env):
        raise ContainerError(f"{where}: process.env entries must be KEY=value strings")
    user = process.get("user") or {}
    for key in ("uid", "gid"):
        if not isinstance(user.get(key, 0), int) or user.get(key, 0) < 0:
            raise ContainerError(f"{where}: process.user.{key} must be a non-negative integer")


def namespaces(spec: Spec) -> dict[str, str | None]:
    """linux.namespaces as {type: path or None}; a type not listed is the host's."""
    return {ns["type"]: ns.get("path") or None
            for ns in (spec.get("linux") or {}).get("namespaces") or []}


def new_namespace(spec: Spec, kind: str) -> bool:
    """Does the container get a NEW namespace of this kind (listed, without a path)?"""
    listed = namespaces(spec)
    return kind in listed and listed[kind] is None


def private_namespace(spec: Spec, kind: str) -> bool:
    """Is the container's namespace of this kind its own: listed, and either new or joined
    by a path that is not the runtime's own namespace of that kind (same inode: the same
    namespace, man 7 namespaces)?"""
    listed = namespaces(spec)
    if kind not in listed:
        return False
    path = listed[kind]
    if path is None:
        return True
    try:
        joined, own = os.stat(path), os.stat(f"/proc/self/ns/{NAMESPACES[kind].file}")
    except OSError:
        return True            # an unreadable path: bootstrap's open() reports it clearly
    return (joined.st_dev, joined.st_ino) != (own.st_dev, own.st_ino)


def rootfs_path(spec: Spec, bundle: str) -> str:
    """root.path, which may be relative to the bundle (runc spec) or absolute (docker)."""
    return os.path.normpath(os.path.join(bundle, spec["root"]["path"]))
