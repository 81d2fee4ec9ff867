"""`labkit-registry`: serve the OCI distribution API from a directory.

    labkit-registry [--root DIR] [--listen HOST:PORT]

Defaults: --root /var/lib/labkit/registry, --listen 127.0.0.1:5000 (labkit.paths). Stop it
with SIGINT or SIGTERM; killing it harder is safe too (storage.py writes atomically).
"""

from __future__ import annotations

import argparse
import signal
import sys

from labkit import paths

from .server import RegistryServer


def parse_listen(value: str) -> tuple[str, int]:
    """"127.0.0.1:5000" / "[::1]:5000" / ":5000" -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"invalid listen address {value!r}: expected HOST:PORT")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit-registry",
                                     description="An OCI distribution (Docker registry v2) server.")
    parser.add_argument("--root", default=str(paths.REGISTRY_ROOT),
                        help="storage directory (default: %(default)s)")
    parser.add_argument("--listen", default=paths.REGISTRY_ADDR, type=parse_listen,
                        help="address to listen on (default: %(default)s)")
    args = parser.parse_args(argv)
    host, port = args.listen
    try:
        server = RegistryServer(args.root, host, port)
    except OSError as e:
        print(f"labkit-registry: cannot listen on {host}:{port}: {e.strerror or e}", file=sys.stderr)
        return 1

    # SIGTERM (systemd, `kill`) stops as cleanly as ctrl-c does.
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)

    print(f"labkit-registry: serving {args.root} on {server.url}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
