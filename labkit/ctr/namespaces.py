"""ctr namespaces ls, and ctr version."""

from __future__ import annotations

import platform

import labkit
from labkit.ctr import output
from labkit.ctr.backend import Backend


def ls(backend: Backend, args) -> int:
    names = sorted(backend.namespaces())
    if args.quiet:
        for name, _ in names:
            print(name)
        return 0
    output.table(["NAME", "LABELS"], [[n, output.labels(l) if l else ""] for n, l in names])
    return 0


def version(backend: Backend, args) -> int:
    server, revision = backend.version()
    print("Client:")
    print(f"  Version:  labkit-ctr {getattr(labkit, '__version__', '0.1.0')}")
    print(f"  Python version: {platform.python_version()}")
    print()
    print("Server:")
    print(f"  Version:  {server}")
    print(f"  Revision: {revision}")
    print(f"  Dialect:  {backend.dialect}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("namespaces", aliases=["namespace", "ns"], help="manage namespaces")
    s = p.add_subparsers(dest="command", required=True)
    c = s.add_parser("ls", aliases=["list"], help="list namespaces")
    c.add_argument("-q", "--quiet", action="store_true", help="print only the namespace name")
    c.set_defaults(run=ls)
    sub.add_parser("version", help="print the client and server versions").set_defaults(run=version)
