"""ctr images: ls, rm, pull.

An image in containerd is only a name pointing at a descriptor (its target): a manifest, or
an index of manifests for several platforms. Everything `images ls` shows beyond the name
is found by reading content: the platforms from the index's entries (or, for a single
manifest, from its config blob), the size by adding up the manifest, config and layers of
the host's platform — the way ctr computes it (images.Size with platforms.Default()).
"""

from __future__ import annotations

import json
import sys

import grpc

from labkit.ctr import output
from labkit.ctr.backend import Backend, Image
from labkit.distribution import mediatypes
from labkit.distribution.platforms import format_platform, host_platform, select_manifest


def _json(backend: Backend, digest: str) -> dict | None:
    try:
        return json.loads(backend.read(digest))
    except (grpc.RpcError, ValueError):
        return None     # not (yet) in the store: a platform not pulled, a pull not finished


def platforms_and_size(backend: Backend, image: Image) -> tuple[list[str], int]:
    """(["linux/amd64", …], bytes of the host platform's manifest, config and layers)."""
    doc = _json(backend, image.digest)
    if doc is None:
        return [], image.size
    total = image.size
    if image.media_type in mediatypes.INDEX_TYPES or "manifests" in doc:
        platforms = [format_platform(m["platform"]) for m in doc.get("manifests", [])
                     if m.get("platform") and m["platform"].get("os") != "unknown"]
        try:
            chosen = select_manifest(doc, host_platform())
        except (LookupError, ValueError):
            return platforms, total
        total += chosen.get("size", 0)
        doc = _json(backend, chosen["digest"])
        if doc is None:
            return platforms, total
    else:
        config = _json(backend, doc.get("config", {}).get("digest", ""))
        platforms = [format_platform(config)] if config else []
    total += doc.get("config", {}).get("size", 0)
    total += sum(layer.get("size", 0) for layer in doc.get("layers", []))
    return platforms, total


def ls(backend: Backend, args) -> int:
    images = sorted(backend.images(), key=lambda i: i.name)
    if args.quiet:
        for i in images:
            print(i.name)
        return 0
    rows = []
    for i in images:
        platforms, size = platforms_and_size(backend, i)
        rows.append([i.name, i.media_type, i.digest, output.size(size),
                     ",".join(platforms) or "-", output.labels(i.labels)])
    output.table(["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"], rows)
    return 0


def rm(backend: Backend, args) -> int:
    """Delete each name, printing it as ctr does; a missing one is an error after the rest."""
    failed = 0
    for name in args.names:
        try:
            backend.delete_image(name)
            print(name)
        except grpc.RpcError as e:
            print(f"ctr: unable to delete {name}: {e.details()}", file=sys.stderr)
            failed = 1
    return failed


def pull(backend: Backend, args) -> int:
    for line in backend.pull(args.ref, platform=args.platform or "", mirrors=args.mirror or [],
                             snapshotter=args.snapshotter or ""):
        print(line, flush=True)
    return 0


def register(sub) -> None:
    p = sub.add_parser("images", aliases=["image", "i"], help="manage images")
    s = p.add_subparsers(dest="command", required=True)
    c = s.add_parser("ls", aliases=["list"], help="list images known to containerd")
    c.add_argument("-q", "--quiet", action="store_true", help="print only the image refs")
    c.set_defaults(run=ls)
    c = s.add_parser("rm", aliases=["remove", "delete", "del"], help="remove one or more images")
    c.add_argument("names", nargs="+")
    c.set_defaults(run=rm)
    c = s.add_parser("pull", help="pull an image from a registry")
    c.add_argument("ref")
    c.add_argument("--platform", help="e.g. linux/arm64 (default: this host's)")
    c.add_argument("--mirror", action="append",
                   help="registry tried for docker.io, e.g. http://127.0.0.1:5000 (repeatable)")
    c.add_argument("--snapshotter", help="unpack into this snapshotter (labkit-containerd)")
    c.set_defaults(run=pull)
