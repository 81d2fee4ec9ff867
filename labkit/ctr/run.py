"""ctr run: create a container from an image and run it — containerd's three steps, by hand.

    1. Snapshots.Prepare  an active snapshot on the image's top layer (its chain ID), keyed
                          by the container id: the container's writable root filesystem
    2. Containers.Create  the record: image, spec (spec.py), runtime, snapshot key
    3. Tasks.Create       the shim, given the snapshot's mounts as rootfs and our fifos as
                          stdout/stderr; Tasks.Start runs the process; Tasks.Wait its exit

Without -d we copy the fifos to our own stdout and stderr, wait, delete the task and exit
with the container's status (with --rm, the container and its snapshot go too). With -d
the task is left running, unconnected, as `ctr run -d` leaves it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading

from labkit.ctr import spec as specs
from labkit.ctr.backend import Backend
from labkit.ctr.containers import remove


class _Copy:
    """Copies a fifo to `out` until every writer has closed it.

    A reader must exist before the shim opens the fifo's write end (its O_NONBLOCK open
    fails without one), so `__init__` opens a read end at once, without blocking. That end
    cannot wait for data: read() on a fifo whose writer has not arrived yet returns EOF at
    once. The thread therefore opens a second, blocking read end — it waits for the writer —
    and reads until the writer goes (the shim closes it when the task is deleted).
    """

    def __init__(self, path: str, out) -> None:
        self.path, self.out = path, out
        self._holder = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            while data := os.read(fd, 65536):
                self.out.write(data)
                self.out.flush()
        finally:
            os.close(fd)

    def finish(self, timeout: float = 10) -> None:
        if self.thread.is_alive():
            # a task that never opened its fifo: open a writer ourselves to end the wait
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        self.thread.join(timeout)
        os.close(self._holder)


def run(backend: Backend, args) -> int:
    _, chains = backend.image_config(args.image)
    if not chains:
        raise ValueError(f"image {args.image} has no layers")
    mounts = backend.prepare(args.snapshotter, args.id, chains[-1])
    spec = specs.generate(args.id, backend.namespace, args.args or ["sh"], env=args.env)
    try:
        backend.create_container(args.id, args.image, spec, args.snapshotter, args.id,
                                 runc_binary=args.runc_binary or "", runc_root=args.runc_root or "")
    except BaseException:
        backend.remove_snapshot(args.snapshotter, args.id)
        raise
    if args.detach:
        backend.create_task(args.id, mounts)
        backend.start(args.id)
        return 0
    fifo_dir = tempfile.mkdtemp(prefix=f"{args.id}-", dir=args.fifo_dir)
    try:
        paths = [os.path.join(fifo_dir, n) for n in ("stdout", "stderr")]
        for p in paths:
            os.mkfifo(p, 0o600)
        pumps = [_Copy(paths[0], sys.stdout.buffer), _Copy(paths[1], sys.stderr.buffer)]
        try:
            backend.create_task(args.id, mounts, stdout=paths[0], stderr=paths[1])
            backend.start(args.id)
            status = backend.wait(args.id)
            backend.delete_task(args.id)        # the shim closes the fifos: the copies end
        finally:
            for p in pumps:
                p.finish()
    finally:
        shutil.rmtree(fifo_dir, ignore_errors=True)
    if args.rm:
        remove(backend, args.id)
    return status


def register(sub) -> None:
    c = sub.add_parser("run", help="run a container")
    c.add_argument("image")
    c.add_argument("id")
    # everything after the id is the command, "-c" included (flags go before the image)
    c.add_argument("args", nargs=argparse.REMAINDER, help="command and arguments (default: sh)")
    c.add_argument("-d", "--detach", action="store_true", help="leave the task running")
    c.add_argument("--rm", action="store_true", help="remove the container when it exits")
    c.add_argument("--env", action="append", help="an environment variable, VAR=value")
    c.add_argument("--snapshotter", default="overlayfs")
    c.add_argument("--runc-binary", help="labkit-containerd: the runtime under labkit-shim "
                                         "(default labkit-runc); containerd: runc in PATH")
    c.add_argument("--runc-root", help="the runtime's --root (its state directory)")
    c.add_argument("--fifo-dir", default=None, help="where the stdio fifos go (default /tmp)")
    c.set_defaults(run=run)
