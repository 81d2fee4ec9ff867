#!/usr/bin/env python3
"""How much memory does one container's shim cost? labkit-shim next to containerd-shim-runc-v2.

A shim lives as long as its container: a class of 30 students with 10 containers each runs
300 shims at once, so a shim's resident memory is what the machine pays per container, whether
the container does anything or not. This script measures it the fair way: a real containerd
1.6 (Debian's, on its own socket, root and state under /tmp) runs an idle busybox container
with `ctr run -d --runc-binary runc --runc-root …`, once per shim, each under its own private
containerd started the same way:

    containerd-shim-runc-v2   containerd's own shim (Go), found in PATH as containerd finds it
    labkit-shim               the same name first in that containerd's PATH: a two-line
                              wrapper that execs labkit-shim (as tests/shim/test_real_containerd.py)

Both shims get the same Task.Create (containerd.runc.v1.Options: runc, its root) and run the
same runc; then each shim's memory is read from the kernel (/proc/<pid>/smaps_rollup, man 5 proc):

    RSS   resident set size: every page the process has in RAM, shared ones counted in full
    PSS   proportional set size: a page shared by N processes counts 1/N -- summed over all
          the shims of a machine, PSS adds up to what they really cost together

The shim is the container init's parent (it is a child subreaper), so its pid is the PPid of
the init that `ctr task ls` names. After a short settle (the shims' start-up garbage is
collected, threads parked) each figure is the median of a few samples.

Usage (as root; nothing else needs to run):
    /opt/labkit/venv/bin/python benchmarks/shim_memory.py
    /opt/labkit/venv/bin/python benchmarks/shim_memory.py --shim /path/to/workspace/bin/labkit-shim

It prints both shims' RSS and PSS in MB and labkit-shim's ratio to containerd-shim-runc-v2's.
Everything it starts is stopped and removed at the end, also on failure. This is a measurement,
not a test: the suite never times or sizes anything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))    # tests/support.py builds the busybox rootfs
from realdocker import RealContainerd  # noqa: E402  (the one launcher of a real containerd)

SHIMS = ("containerd-shim-runc-v2", "labkit-shim")


def smaps_rollup(pid: int) -> dict[str, int]:
    """{"Rss": kB, "Pss": kB, …} of a process, from the kernel's own sum of its mappings."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields[name.strip()] = int(rest.split()[0])
    return fields


def ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise RuntimeError(f"no PPid in /proc/{pid}/status")


def init_pid(containerd: RealContainerd, id: str) -> int:
    """The PID of container `id`'s first process, as `ctr task ls` lists it."""
    for line in containerd.ctr("task", "ls").stdout.splitlines()[1:]:
        name, pid, *_ = line.split()
        if name == id:
            return int(pid)
    raise RuntimeError(f"task {id} is not listed by `ctr task ls`")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shim", default=str(Path(sys.executable).parent / "labkit-shim"),
                    help="the labkit-shim program to measure (default: the virtualenv's)")
    ap.add_argument("--samples", type=int, default=5, help="samples per shim (default 5)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait before sampling")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("shim_memory.py: run as root (it starts containerd and containers)", file=sys.stderr)
        return 2
    for program in ("containerd", "ctr", "runc", "containerd-shim-runc-v2"):
        if shutil.which(program) is None:
            print(f"shim_memory.py: {program} is not installed", file=sys.stderr)
            return 2
    from support import make_busybox_rootfs

    # Byte-compiled first, as an installed package is (bench.py does the same): with
    # PYTHONDONTWRITEBYTECODE set, an editable checkout (or a workspace) would be compiled from
    # source in every shim, and the compiler's garbage would be counted as the shim's memory.
    import compileall
    compileall.compile_dir(REPO / "labkit", quiet=1)
    workspace = Path(args.shim).resolve().parent.parent / "labkit_student"
    if workspace.is_dir():
        compileall.compile_dir(workspace, quiet=1)
    d = Path(tempfile.mkdtemp(prefix="lkmem-", dir="/tmp"))
    make_busybox_rootfs(d / "rootfs")
    started: list[RealContainerd] = []
    try:
        shims: dict[str, int] = {}
        for name in SHIMS:
            containerd = RealContainerd(d / name, args.shim if name == "labkit-shim" else None)
            started.append(containerd)
            containerd.start()
            containerd.ctr("run", "-d", "--runc-binary", "runc", "--runc-root", str(d / name / "runc"),
                           "--rootfs", str(d / "rootfs"), "idle", "/bin/sleep", "3600")
            shims[name] = ppid(init_pid(containerd, "idle"))
        time.sleep(args.settle)
        figures: dict[str, tuple[float, float]] = {}
        for name, pid in shims.items():
            samples = []
            for _ in range(args.samples):
                samples.append(smaps_rollup(pid))
                time.sleep(0.2)
            rss = statistics.median(s["Rss"] for s in samples) / 1024
            pss = statistics.median(s["Pss"] for s in samples) / 1024
            figures[name] = (rss, pss)
        print(f"one idle busybox container's shim, under containerd "
              f"{started[0].ctr('version').stdout.split('Version:')[-1].split()[0]}, runc:")
        print(f"  {'shim':<26}{'pid':>8}{'RSS MB':>9}{'PSS MB':>9}")
        for name, (rss, pss) in figures.items():
            print(f"  {name:<26}{shims[name]:>8}{rss:>9.1f}{pss:>9.1f}")
        (lrss, lpss), (grss, gpss) = figures["labkit-shim"], figures["containerd-shim-runc-v2"]
        print(f"  labkit-shim / containerd-shim-runc-v2: RSS x{lrss / grss:.2f}, PSS x{lpss / gpss:.2f}")
        return 0
    finally:
        for containerd in started:
            containerd.remove(["idle"])
            containerd.stop()
        for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
            try:   # a shim of ours that outlived containerd (only ours: by its socket's dir)
                if str(d) in Path(f"/proc/{pid}/environ").read_text(errors="replace"):
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
