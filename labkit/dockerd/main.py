"""`labkit-dockerd`: the Docker Engine API daemon.

    labkit-dockerd [-H unix:///run/labkit/docker.sock | -H tcp://127.0.0.1:2375]...
                   [--tlsverify --tlscacert CA --tlscert CERT --tlskey KEY]
                   [--containerd SOCK] [--root DIR]
                   [--exec-root DIR] [--registry-mirror URL]... [--default-runtime NAME]
                   [--add-runtime NAME=PATH]... [--cgroup-parent /labkit]
                   [--storage-driver overlayfs|native] [--debug]

Then, for example:  DOCKER_HOST=unix:///run/labkit/docker.sock docker run hello-world

TCP: plain on loopback (curl works); any other address only with --tlsverify, as dockerd: the
server's certificate and key, and the CA whose signature a client certificate must carry
(`docker --tlsverify --tlscacert ca.pem --tlscert cert.pem --tlskey key.pem -H tcp://HOST:2376`).

Serving runs in a background thread; the main thread waits for SIGTERM or SIGINT and then
shuts the server down (graceful: the socket is removed; containers keep running, owned by
their shims, and are picked up again by the next start — Docker's "live restore").
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from labkit import paths
from labkit.dockerd.core import DEFAULT_MIRROR, VERSION, DaemonConfig
from labkit.dockerd.daemon import Daemon
from labkit.dockerd.router import Router
from labkit.dockerd.server import EngineAPIServer, EngineAPITCPServer, is_loopback, tls_context

log = logging.getLogger("labkit.dockerd")


def _listen_address(host: str) -> str:
    """-H unix:///path, /path, or tcp://HOST:PORT (not loopback: only with --tlsverify)."""
    if host.startswith("unix://"):
        host = host[len("unix://"):]
    if host.startswith("/"):
        return "unix://" + host
    if host.startswith("tcp://"):
        address = host[len("tcp://"):]
        name, _, port = address.rpartition(":")
        name = name.strip("[]")
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise argparse.ArgumentTypeError(f"invalid -H {host!r}: expected tcp://HOST:PORT")
        return f"tcp://{name}:{port}"
    raise argparse.ArgumentTypeError(f"unsupported -H {host!r}: expected unix:///path or "
                                     "tcp://127.0.0.1:PORT")


def _runtime(value: str) -> tuple[str, str]:
    name, eq, path = value.partition("=")
    if not eq or not name or not path:
        raise argparse.ArgumentTypeError(f"invalid --add-runtime {value!r}: expected NAME=PATH")
    return name, path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="labkit-dockerd", description="The Docker Engine API, "
                                "on top of labkit-containerd.")
    p.add_argument("-H", "--host", type=_listen_address, action="append", dest="hosts",
                   help=f"where to listen, repeatable: unix:///path or tcp://127.0.0.1:PORT "
                        f"(default unix://{paths.DOCKER_SOCK})")
    p.add_argument("--containerd", default=str(paths.CONTAINERD_SOCK),
                   help=f"labkit-containerd's gRPC socket (default {paths.CONTAINERD_SOCK})")
    p.add_argument("--root", type=Path, default=paths.DOCKERD_ROOT,
                   help=f"persistent state: containers, logs (default {paths.DOCKERD_ROOT})")
    p.add_argument("--exec-root", type=Path, default=paths.DOCKERD_EXEC_ROOT,
                   help=f"volatile state: stdio fifos (default {paths.DOCKERD_EXEC_ROOT})")
    p.add_argument("--registry-mirror", action="append", dest="mirrors", metavar="URL",
                   help=f"registry to pull docker.io images from (default {DEFAULT_MIRROR})")
    p.add_argument("--default-runtime", default="labkit-runc",
                   help="OCI runtime for new containers: labkit-runc, runc, crun, a name "
                        "given with --add-runtime, or a path")
    p.add_argument("--add-runtime", action="append", type=_runtime, default=[],
                   metavar="NAME=PATH", help="register another OCI runtime")
    p.add_argument("--cgroup-parent", default=paths.CGROUP_PARENT,
                   help="cgroup under which containers get theirs (default %(default)s)")
    p.add_argument("--storage-driver", "-s", default="overlayfs", choices=["overlayfs", "native"],
                   help="containerd snapshotter for images and containers: overlayfs, or "
                        "native (full copies; any filesystem) (default %(default)s)")
    p.add_argument("--tlsverify", action="store_true",
                   help="TCP with TLS, clients must present a certificate signed by --tlscacert "
                        "(required for -H tcp:// on any non-loopback address)")
    p.add_argument("--tlscacert", metavar="CA.pem", help="the CA that signs client certificates")
    p.add_argument("--tlscert", metavar="CERT.pem", help="this daemon's certificate")
    p.add_argument("--tlskey", metavar="KEY.pem", help="this daemon's private key")
    p.add_argument("--debug", action="store_true", help="log every request")
    p.add_argument("--version", action="version", version=f"labkit-dockerd {VERSION}")
    args = p.parse_args(argv)
    if args.tlsverify and not (args.tlscacert and args.tlscert and args.tlskey):
        p.error("--tlsverify needs --tlscacert, --tlscert and --tlskey")
    for host in args.hosts or []:
        name = host[len("tcp://"):].rpartition(":")[0] if host.startswith("tcp://") else None
        if name is not None and not is_loopback(name) and not args.tlsverify:
            p.error(f"refusing -H {host}: the Engine API gives root on this host to anyone who "
                    "connects; listen on loopback (127.0.0.1 or ::1) or add --tlsverify with "
                    "--tlscacert, --tlscert and --tlskey, so only holders of a client "
                    "certificate signed by that CA get in")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s labkit-dockerd %(levelname)s %(message)s")
    if args.debug:
        logging.getLogger("labkit").setLevel(logging.DEBUG)
    config = DaemonConfig(root=args.root, exec_root=args.exec_root, containerd=args.containerd,
                          mirrors=args.mirrors or [DEFAULT_MIRROR],
                          default_runtime=args.default_runtime,
                          runtimes=dict(args.add_runtime),
                          runtime_root=paths.RUNTIME_ROOT / paths.NAMESPACE,
                          cgroup_parent=args.cgroup_parent,
                          storage_driver=args.storage_driver)
    if "/" in config.default_runtime:
        # a path: known under its file's name, as a key of `docker info`'s Runtimes, and
        # what `docker inspect` shows as HostConfig.Runtime (Docker shows names, not paths)
        name = os.path.basename(config.default_runtime.rstrip("/"))
        config.runtimes[name] = config.default_runtime
        config.default_runtime = name
    try:
        daemon = Daemon(config)
        daemon._runtime_binary(config.default_runtime)  # unknown names fail now, not at run
        daemon.restore()
        router = Router(daemon, VERSION)
        tls = tls_context(args.tlscacert, args.tlscert, args.tlskey) if args.tlsverify else None
        servers = []
        for host in args.hosts or [f"unix://{paths.DOCKER_SOCK}"]:
            if host.startswith("unix://"):
                servers.append(EngineAPIServer(host[len("unix://"):], router))
            else:
                name, _, port = host[len("tcp://"):].rpartition(":")
                servers.append(EngineAPITCPServer(name, int(port), router, tls))
    except Exception as e:  # bad paths, a socket in use, an unknown runtime: one clear line
        message = getattr(e, "message", None) or str(e)
        print(f"labkit-dockerd: {message}", file=sys.stderr)
        return 1

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for server in servers:
        threading.Thread(target=server.serve_forever, name="api", daemon=True).start()
    log.info("API listening on %s (containerd %s, runtime %s)",
             ", ".join(args.hosts or [f"unix://{paths.DOCKER_SOCK}"]), config.containerd,
             config.default_runtime)
    stop.wait()
    log.info("shutting down")
    for server in servers:
        server.shutdown()
        server.server_close()
    daemon.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
