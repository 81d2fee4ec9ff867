"""`python -m labkit.images [--registry ADDR] [NAME...]`: build and push the lab's images."""

from __future__ import annotations

import argparse
import sys

from labkit import paths
from labkit.distribution.errors import RegistryError

from . import build_and_push
from .builder import BUILDERS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.images",
                                     description="Build the lab's images offline and push them.")
    parser.add_argument("--registry", default=paths.REGISTRY_ADDR,
                        help="registry address or URL (default: %(default)s)")
    parser.add_argument("names", nargs="*", default=list(BUILDERS), metavar="NAME",
                        help=f"images to build (default: all of {', '.join(BUILDERS)})")
    args = parser.parse_args(argv)

    def report(name: str, digest: str, pushed: bool) -> None:
        state = "pushed" if pushed else "up to date"
        print(f"library/{name}:latest  {digest}  {state}", flush=True)

    try:
        build_and_push(args.registry, tuple(args.names), report=report)
    except (ValueError, RuntimeError, RegistryError, ConnectionError) as e:
        print(f"labkit.images: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
