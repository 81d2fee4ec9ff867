"""labkit-ctr's entry point: ctr's global flags, one sub-command group per module.

    labkit-ctr -a /run/labkit/containerd/containerd.sock -n moby images ls
    labkit-ctr -a /tmp/x/containerd.sock tasks ls            (a real containerd: same output)

Errors print as ctr prints them, "ctr: <what the daemon said>", with exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc

from labkit import paths
from labkit.ctr import containers, content, images, namespaces, run, snapshots, tasks
from labkit.ctr.backend import DIALECTS, CtrError, connect


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labkit-ctr", description="containerd's ctr, for labkit")
    p.add_argument("-a", "--address", default=os.environ.get("CONTAINERD_ADDRESS",
                                                             str(paths.CONTAINERD_SOCK)),
                   help="address of the containerd's gRPC socket")
    # ctr's default namespace is "default"; labkit-dockerd (like dockerd) uses "moby".
    p.add_argument("-n", "--namespace", default=os.environ.get("CONTAINERD_NAMESPACE", "default"),
                   help="namespace to use with commands")
    p.add_argument("--dialect", choices=("auto", *DIALECTS), default="auto",
                   help="the API the daemon speaks: labkit-containerd's or containerd's "
                        "(auto: ask each one's Version service)")
    sub = p.add_subparsers(dest="group", required=True)
    for module in (images, containers, tasks, snapshots, content, namespaces, run):
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with connect(args.address, args.namespace, args.dialect) as backend:
            return args.run(backend, args)
    except grpc.RpcError as e:
        print(f"ctr: {e.details() or e.code()}", file=sys.stderr)
    except (CtrError, ValueError) as e:
        print(f"ctr: {e}", file=sys.stderr)
    except BrokenPipeError:
        pass
    return 1


if __name__ == "__main__":
    sys.exit(main())
