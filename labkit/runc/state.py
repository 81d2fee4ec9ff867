"""`labkit-runc state ID`: print the container's OCI state as JSON.

    {"ociVersion": "1.0.2", "id": "c1", "pid": 4242, "status": "running",
     "bundle": "/path/to/bundle", "rootfs": "/path/to/bundle/rootfs",
     "created": "2026-11-23T06:59:35.452224393Z", "owner": ""}

The status is derived, not stored (container.py); an unknown id is the error
"container does not exist", which the shim and dockerd look for.
"""

from __future__ import annotations

import json
import sys

from labkit.runc.container import Container

# argparse only for readers and type checkers: this command is run by main.quick_args,
# which spares it argparse's import (main.py says why)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id")


def run(args: argparse.Namespace) -> int:
    state = Container.load(args.root, args.id).oci_state()
    sys.stdout.write(json.dumps(state, indent=2) + "\n")
    return 0
