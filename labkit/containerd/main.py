"""`labkit-containerd`: the daemon's command line.

    labkit-containerd [--address SOCK] [--root DIR] [--state DIR] [--shim labkit-shim]
                      [--snapshotter overlayfs|native] [--log-level info]

Boot order, and why:
    1. open the stores under --root (content, meta.db, snapshots): everything else needs them;
       then clean up after a pull that a crash interrupted (temporary mounts, "extract-…"
       snapshots);
    2. listen on <address>.ttrpc for the events shims forward (forward.py), then
       reconnect to the shims of containers that kept running while we were away (bundles
       under --state), last, because it uses all of the above;
    3. listen on --address (a unix socket, mode 0660: whoever can talk to containerd is root
       in effect) and serve until SIGTERM or SIGINT.
Shutting down stops serving and removes the sockets. It does NOT stop containers: their
shims are separate processes in their own sessions, which is the whole point of having them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from labkit import paths
from labkit.containerd.forward import ForwardServer
from labkit.containerd.server import Daemon, make_server

log = logging.getLogger("labkit.containerd")

_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes, including the terminating NUL


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="labkit-containerd",
                                description="labkit's containerd: images, snapshots, "
                                            "containers and tasks over gRPC")
    p.add_argument("--address", "-a", default=str(paths.CONTAINERD_SOCK),
                   help="unix socket to serve gRPC on (default: %(default)s)")
    p.add_argument("--root", default=str(paths.CONTAINERD_ROOT),
                   help="persistent data: content, snapshots, meta.db (default: %(default)s)")
    p.add_argument("--state", default=str(paths.CONTAINERD_STATE),
                   help="volatile state: task bundles (default: %(default)s)")
    p.add_argument("--shim", default="labkit-shim",
                   help="shim binary to start for each task (default: %(default)s)")
    p.add_argument("--snapshotter", default="overlayfs", choices=["overlayfs", "native"],
                   help="the snapshotter requests that name none get: overlayfs (layers "
                        "stacked by the kernel) or native (full copies, bind mounts; works on "
                        "any filesystem) (default: %(default)s)")
    p.add_argument("--log-level", "-l", default="info",
                   choices=["debug", "info", "warning", "error"], help="(default: %(default)s)")
    return p.parse_args(argv)


def _socket_in_use(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    address = args.address[len("unix://"):] if args.address.startswith("unix://") else args.address
    address = os.path.abspath(address)
    if len(address.encode()) + len(".ttrpc") > _SUN_PATH_MAX:
        print(f"labkit-containerd: socket path {address} is longer than {_SUN_PATH_MAX} bytes",
              file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("labkit-containerd: must run as root (it mounts filesystems)", file=sys.stderr)
        return 1
    Path(address).parent.mkdir(parents=True, exist_ok=True)
    if os.path.exists(address):
        if _socket_in_use(address):
            print(f"labkit-containerd: another daemon is serving on {address}", file=sys.stderr)
            return 1
        os.unlink(address)  # left over from a daemon that did not shut down cleanly

    try:
        daemon = Daemon(Path(args.root), Path(args.state), address, shim_binary=args.shim,
                        snapshotter=args.snapshotter)
        daemon.cleanup()
        # Shims forward their events to <socket>.ttrpc (TTRPC_ADDRESS); listen before any
        # shim, recovered or new, may want to talk.
        forward = ForwardServer(address + ".ttrpc", daemon.exchange)
        daemon.tasks.recover()
        server = make_server(daemon, address)
    except (OSError, ValueError) as e:
        print(f"labkit-containerd: {e}", file=sys.stderr)
        return 1

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    os.chmod(address, 0o660)
    log.info("labkit-containerd serving on %s (root %s, state %s)", address, args.root,
             args.state)
    while not stop.wait(1.0):  # wake up now and then: signals are handled between waits
        pass

    log.info("shutting down; containers keep running under their shims")
    server.stop(grace=2).wait()
    forward.close()
    daemon.close()
    try:
        os.unlink(address)
    except FileNotFoundError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
