"""ctr content: ls, get — the content store's blobs, addressed by digest."""

from __future__ import annotations

import sys
import time

from labkit import units
from labkit.ctr import output
from labkit.ctr.backend import Backend


def ls(backend: Backend, args) -> int:
    blobs = sorted(backend.blobs(), key=lambda b: b.digest)
    if args.quiet:
        for b in blobs:
            print(b.digest)
        return 0
    now = time.time()
    output.table(["DIGEST", "SIZE", "AGE", "LABELS"],
                 [[b.digest, output.size(b.size),
                   units.human_duration(now - b.created) if b.created else "-",
                   output.labels(b.labels)] for b in blobs])
    return 0


def get(backend: Backend, args) -> int:
    """The blob's bytes on stdout, unchanged (ctr content get DIGEST > file)."""
    sys.stdout.buffer.write(backend.read(args.digest))
    sys.stdout.flush()
    return 0


def register(sub) -> None:
    p = sub.add_parser("content", help="manage content")
    s = p.add_subparsers(dest="command", required=True)
    c = s.add_parser("ls", aliases=["list"], help="list all blobs in the store")
    c.add_argument("-q", "--quiet", action="store_true", help="print only the blob digest")
    c.set_defaults(run=ls)
    c = s.add_parser("get", help="get the data for an object")
    c.add_argument("digest")
    c.set_defaults(run=get)
