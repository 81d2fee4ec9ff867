"""ctr containers: ls, info, rm. A container is metadata only (image, runtime, spec,
snapshot); nothing runs until a task is created for it (tasks.py)."""

from __future__ import annotations

import json
import sys

import grpc

from labkit.ctr import output
from labkit.ctr.backend import Backend


def ls(backend: Backend, args) -> int:
    containers = sorted(backend.containers(), key=lambda c: c.id)
    if args.quiet:
        for c in containers:
            print(c.id)
        return 0
    output.table(["CONTAINER", "IMAGE", "RUNTIME"],
                 [[c.id, c.image or "-", c.runtime] for c in containers])
    return 0


def info(backend: Backend, args) -> int:
    c = backend.container(args.id)
    print(json.dumps({"ID": c.id, "Labels": c.labels or None, "Image": c.image,
                      "Runtime": {"Name": c.runtime}, "SnapshotKey": c.snapshot_key,
                      "Snapshotter": c.snapshotter, "Spec": c.spec}, indent=4))
    return 0


def remove(backend: Backend, id: str, keep_snapshot: bool = False) -> None:
    """Delete the record, then its snapshot (ctr's default, WithSnapshotCleanup): the
    container's writable layer is the client's to remove, not containerd's."""
    c = backend.container(id)
    backend.delete_container(id)
    if c.snapshot_key and not keep_snapshot:
        try:
            backend.remove_snapshot(c.snapshotter or "overlayfs", c.snapshot_key)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise


def rm(backend: Backend, args) -> int:
    failed = 0
    for id in args.ids:
        try:
            remove(backend, id, args.keep_snapshot)
        except grpc.RpcError as e:
            print(f"ctr: failed to delete container {id!r}: {e.details()}", file=sys.stderr)
            failed = 1
    return failed


def register(sub) -> None:
    p = sub.add_parser("containers", aliases=["container", "c"], help="manage containers")
    s = p.add_subparsers(dest="command", required=True)
    c = s.add_parser("ls", aliases=["list"], help="list containers")
    c.add_argument("-q", "--quiet", action="store_true", help="print only the container id")
    c.set_defaults(run=ls)
    c = s.add_parser("info", help="get info about a container")
    c.add_argument("id")
    c.set_defaults(run=info)
    c = s.add_parser("rm", aliases=["delete", "del", "remove"], help="delete containers")
    c.add_argument("ids", nargs="+")
    c.add_argument("--keep-snapshot", action="store_true", help="do not remove the snapshot")
    c.set_defaults(run=rm)
