"""`labkit build [-t NAME]… [-f Dockerfile] [--build-arg K=V]… [--no-cache] [-q] [--target S] DIR`

The classic (non-BuildKit) build, as the docker CLI does it with DOCKER_BUILDKIT=0:

    1. pack DIR into a tar, leaving out what DIR/.dockerignore names (labkit.dockerignore —
       the very matcher the daemon's builder applies again); the Dockerfile and .dockerignore
       themselves are always sent, as the docker CLI does
    2. "Sending build context to Docker daemon  2.56kB"
    3. POST /build?t=…&dockerfile=…&buildargs=<json>&nocache=1&q=1&target=…&rm=1, the tar as
       the body (Content-Type: application/x-tar)
    4. the answer is a JSON message stream: {"stream": "Step 1/3 : FROM busybox\\n"} lines are
       printed as they come, pull progress inside the build (a FROM of a missing image) is
       drawn by ProgressPrinter, {"aux": {"ID": "sha256:…"}} carries the image ID (-q prints
       only that); an errorDetail ends the build with exit status 1
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile

from labkit.cli.output import ProgressPrinter
from labkit.client import Client
from labkit.dockerignore import ignore_patterns, ignored
from labkit.units import human_size


def add_parser(sub) -> None:
    p = sub.add_parser("build", help="build an image from a Dockerfile and a context directory")
    p.add_argument("-t", "--tag", action="append", default=[], help="name:tag for the image")
    p.add_argument("-f", "--file", help="the Dockerfile, relative to the context (default Dockerfile)")
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image ID")
    p.add_argument("--target", help="build up to this stage")
    p.add_argument("context", help="the context directory")
    p.set_defaults(func=command)


def context_tar(directory: str, dockerfile: str = "Dockerfile") -> bytes:
    """DIR as an uncompressed tar, paths relative to DIR, .dockerignore applied."""
    ignore_file = os.path.join(directory, ".dockerignore")
    patterns = []
    if os.path.exists(ignore_file):
        with open(ignore_file, encoding="utf-8", errors="replace") as f:
            patterns = ignore_patterns(f.read())
    always = {dockerfile, ".dockerignore"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            rel_root = os.path.relpath(root, directory)
            for name in sorted(dirs) + sorted(files):
                rel = os.path.normpath(os.path.join(rel_root, name))
                if rel not in always and ignored(rel, patterns):
                    # an ignored directory may still hold a "!re-included" file: keep walking
                    continue
                info = tar.gettarinfo(os.path.join(root, name), arcname=rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(os.path.join(root, name), "rb") as data:
                        tar.addfile(info, data)
                else:
                    tar.addfile(info)
    return buf.getvalue()


def command(client: Client, args: argparse.Namespace) -> int:
    if not os.path.isdir(args.context):
        raise ValueError(f"unable to prepare context: path {args.context!r} not found")
    dockerfile = args.file or "Dockerfile"
    body = context_tar(args.context, dockerfile)
    out = sys.stderr if args.quiet else sys.stdout
    if not args.quiet:
        print(f"Sending build context to Docker daemon  {human_size(len(body))}", flush=True)
    buildargs = dict(item.split("=", 1) if "=" in item else (item, os.environ.get(item, ""))
                     for item in args.build_arg)
    query = {"dockerfile": dockerfile, "t": args.tag or None,  # t=a&t=b for several -t
             "buildargs": json.dumps(buildargs) if buildargs else None,
             "nocache": "1" if args.no_cache else None, "q": "1" if args.quiet else None,
             "target": args.target, "rm": "1", "version": "1"}
    printer = ProgressPrinter(sys.stdout, terminal=sys.stdout.isatty())
    image_id = ""
    for msg in client.build(body, query):
        if "aux" in msg:
            image_id = (msg["aux"] or {}).get("ID", image_id)
            continue
        if args.quiet:
            # with q=1 dockerd sends the ID as the only stream line (and no aux at 20.10)
            text = msg.get("stream", "").strip()
            if text.startswith("sha256:"):
                image_id = text
            continue
        if "stream" in msg:
            out.write(msg["stream"])
            out.flush()
        else:
            printer.show(msg)
    if args.quiet:
        print(image_id)
    return 0
