"""ctr snapshots: ls, rm — one snapshotter's snapshots (--snapshotter, default overlayfs)."""

from __future__ import annotations

from labkit.ctr import output
from labkit.ctr.backend import Backend


def ls(backend: Backend, args) -> int:
    snaps = sorted(backend.snapshots(args.snapshotter), key=lambda s: s.key)
    output.table(["KEY", "PARENT", "KIND"], [[s.key, s.parent, s.kind] for s in snaps])
    return 0


def rm(backend: Backend, args) -> int:
    for key in args.keys:
        backend.remove_snapshot(args.snapshotter, key)
    return 0


def register(sub) -> None:
    p = sub.add_parser("snapshots", aliases=["snapshot"], help="manage snapshots")
    p.add_argument("--snapshotter", default="overlayfs", help="snapshotter name")
    s = p.add_subparsers(dest="command", required=True)
    s.add_parser("ls", aliases=["list"], help="list snapshots").set_defaults(run=ls)
    c = s.add_parser("rm", aliases=["delete", "del", "remove"], help="remove snapshots")
    c.add_argument("keys", nargs="+")
    c.set_defaults(run=rm)
