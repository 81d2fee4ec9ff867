#!/usr/bin/env python3
"""labkit's soak: run many containers, then check that nothing was left behind.

A container engine that leaks one mount, one cgroup or one file descriptor per container
works in every test and dies after a week in production. This script runs N complete
container lifecycles and compares what the host holds before and after:

  engine    N × `docker run --rm busybox true`: the real docker CLI against a PRIVATE lab
            (`labkit lab up` with LABKIT_RUN_DIR & co in a temporary directory, the images
            pushed to its own registry), so every layer takes part: labkit-dockerd,
            labkit-containerd, labkit-shim, labkit-runc.
  runtime   N × labkit-runc create + start + (wait) + delete on a busybox bundle running
            `true`, with a cgroup and limits of its own: only L1.

Counted before and after each part (the runtime's counts are the same things, for its --root,
its bundle and its cgroup parent):

  mounts      lines of /proc/self/mountinfo (and of each daemon's mount namespace) that
              mention the lab's directories
  cgroups     directories under the containers' cgroup parent, in every hierarchy, named after
              a container this soak ran (the parent is shared by every lab on the host)
  netns       nsfs mounts under the lab's directories, and the entries of /run/netns
  processes   the descendants of the lab's daemons, and any process whose command line
              mentions the lab's directories (shims, inits)
  state       files and directories under the run directory (runtime state, bundles, fifos,
              shim sockets) and dockerd's and containerd's per-container records
  fds         open file descriptors of each daemon (runtime: of this script)

It exits 1 if any count grew (0 if none did), after printing the table. Usage, as root:

    /opt/labkit/venv/bin/python benchmarks/soak.py                # 1000 cycles of each
    /opt/labkit/venv/bin/python benchmarks/soak.py -n 50          # CI's short version
    /opt/labkit/venv/bin/python benchmarks/soak.py -n 200 --skip-engine

The counts are taken once the engine is idle: after the last cycle, the script waits (up to
--settle seconds) until two snapshots in a row agree, so that a shim still on its way out or
a connection dockerd has not closed yet is not counted as a leak.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # tests/support.py builds the busybox bundle

from labkit import paths, procfs  # noqa: E402

CGROUP_ROOTS = ("cgroup", "cgroup2")
LABKIT = [sys.executable, "-m", "labkit.cli.main"]


# --- what the host holds -----------------------------------------------------------------------

def cgroup_hierarchies() -> list[str]:
    """The mount point of every cgroup hierarchy (v1 controllers, the v2 unified one)."""
    return sorted({m.mount_point for m in procfs.mountinfo() if m.fstype in CGROUP_ROOTS})


def cgroup_dirs(parent: str, names: set[str] | None) -> int:
    """Directories below `parent` in every hierarchy; only those named in `names` unless None
    (the parent is ours alone)."""
    count = 0
    for hierarchy in cgroup_hierarchies():
        top = os.path.join(hierarchy, parent.strip("/"))
        for dirpath, dirnames, _ in os.walk(top):
            count += sum(1 for d in dirnames if names is None or d in names)
    return count


def mount_lines(pids: list[int], needles: list[str]) -> tuple[int, int]:
    """(mounts mentioning `needles`, of those the nsfs ones) in our mount namespace and in
    each of `pids`' (each namespace counted once)."""
    seen, mounts, nsfs = set(), 0, 0
    for pid in ["self", *pids]:
        try:
            ns = os.readlink(f"/proc/{pid}/ns/mnt")
            if ns in seen:
                continue
            seen.add(ns)
            entries = procfs.mountinfo(pid)
        except (OSError, ValueError):
            continue
        for m in entries:
            if any(n in m.mount_point or n in m.source or n in m.root for n in needles):
                mounts += 1
                nsfs += m.fstype == "nsfs"
    return mounts, nsfs


def netns_entries() -> int:
    try:
        return len(os.listdir("/run/netns"))
    except FileNotFoundError:
        return 0


def processes(roots: list[int], needles: list[str], exclude: set[int]) -> int:
    """Descendants of `roots` plus processes whose command line mentions one of `needles`."""
    children: dict[int, list[int]] = {}
    mentioned = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        st = procfs.stat(pid)
        if st is None or st.state in procfs.EXITED_STATES:
            continue
        children.setdefault(st.ppid, []).append(pid)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if any(n in cmdline for n in needles):
            mentioned.add(pid)
    found, todo = set(), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return len((found | mentioned) - exclude - set(roots))


def entries(*tops: Path) -> int:
    """Files and directories below `tops` (not below mount points: a mounted rootfs is
    counted as a mount, not as thousands of files)."""
    count = 0
    for top in tops:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not os.path.ismount(os.path.join(dirpath, d))]
            count += len(dirnames) + len(filenames)
    return count


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def settled(snapshot, timeout: float) -> dict[str, int]:
    """Snapshots until two in a row agree (or `timeout`): what is on its way out has gone."""
    deadline = time.monotonic() + timeout
    last = snapshot()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = snapshot()
        if now == last:
            return now
        last = now
    return last


def report(title: str, before: dict[str, int], after: dict[str, int], elapsed: float,
           cycles: int, failures: int) -> bool:
    """Print the table; True if nothing grew."""
    print(f"{title}: {cycles} cycles in {elapsed:.0f} s ({elapsed / max(cycles, 1) * 1000:.0f} ms "
          f"each), {failures} failed")
    width = max(len(k) for k in before)
    grew = []
    print(f"  {'':{width}}  BEFORE   AFTER")
    for key in before:
        mark = ""
        if after[key] > before[key]:
            grew.append(key)
            mark = "  <- grew"
        print(f"  {key:{width}}  {before[key]:6}  {after[key]:6}{mark}")
    print(f"  result: {'LEAK: ' + ', '.join(grew) if grew else 'nothing left behind'}\n")
    return not grew and failures == 0


# --- the engine --------------------------------------------------------------------------------

class PrivateLab:
    """A lab of its own under a temporary directory (as tests/lab/conftest.py makes one)."""

    def __init__(self, root: Path):
        self.root = root
        self.env = {k: v for k, v in os.environ.items()
                    if k != "DOCKER_HOST" and not k.startswith("LABKIT_IMPL")}
        registry, jupyter = random.sample(range(15000, 16000), 2)
        self.env.update(LABKIT_RUN_DIR=str(root / "run"), LABKIT_LIB_DIR=str(root / "lib"),
                        LABKIT_LOG_DIR=str(root / "log"), LABKIT_ETC_DIR=str(root / "etc"),
                        LABKIT_REGISTRY_ADDR=f"127.0.0.1:{free_port(registry)}",
                        LABKIT_JUPYTER_IP="127.0.0.1", LABKIT_JUPYTER_PORT=str(free_port(jupyter)))
        self.docker_env = dict(self.env, DOCKER_HOST=f"unix://{root / 'run' / 'docker.sock'}")

    def lab(self, verb: str, timeout: float = 300) -> None:
        r = subprocess.run(LABKIT + ["lab", verb], env=self.env, capture_output=True, text=True,
                           timeout=timeout, cwd=REPO)
        if r.returncode:
            raise RuntimeError(f"labkit lab {verb} failed: {(r.stderr or r.stdout).strip()}")

    def daemon_pids(self) -> dict[str, int]:
        found = {}
        for pid_file in (self.root / "run").glob("*.pid"):
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                continue
            if procfs.alive(pid):
                found[pid_file.stem] = pid
        return found


def free_port(start: int) -> int:
    for port in range(start, 16000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port in 15000-16000")


def soak_engine(cycles: int, image: str, docker: str, settle: float) -> bool:
    root = Path(tempfile.mkdtemp(prefix="lksoak-", dir="/tmp"))
    lab = PrivateLab(root)
    ids: set[str] = set()
    try:
        lab.lab("up")
        lab.lab("images")
        daemons = lab.daemon_pids()
        cidfile = root / "cid"
        needles = [str(root)]

        def snapshot() -> dict[str, int]:
            mounts, nsfs = mount_lines(list(daemons.values()), needles)
            snap = {"mounts": mounts,
                    "cgroups": cgroup_dirs(paths.CGROUP_PARENT, ids),
                    "netns (nsfs mounts)": nsfs,
                    "netns (/run/netns)": netns_entries(),
                    "processes": processes(list(daemons.values()), needles, {os.getpid()}),
                    "state (run dir)": entries(root / "run"),
                    "state (dockerd containers)": entries(root / "lib" / "docker" / "containers"),
                    "state (containerd snapshots)": entries(root / "lib" / "containerd" / "snapshots"),
                    }
            for name, pid in sorted(daemons.items()):
                snap[f"fds {name}"] = fds(pid)
            return snap

        # one container first: the image is unpacked, the connections are made
        run_once(docker, image, lab.docker_env, cidfile, ids)
        before = settled(snapshot, settle)
        failures = 0
        start = time.monotonic()
        for i in range(cycles):
            if not run_once(docker, image, lab.docker_env, cidfile, ids):
                failures += 1
                if failures > max(3, cycles // 20):
                    print(f"engine: giving up after {failures} failed runs", file=sys.stderr)
                    break
            if (i + 1) % 100 == 0:
                print(f"  engine: {i + 1}/{cycles}", file=sys.stderr, flush=True)
        elapsed = time.monotonic() - start
        after = settled(snapshot, settle)
        return report(f"engine: docker run --rm {image} true", before, after, elapsed, cycles,
                      failures)
    finally:
        try:
            lab.lab("reset")
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"engine: {e}", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)


def run_once(docker: str, image: str, env: dict, cidfile: Path, ids: set[str]) -> bool:
    cidfile.unlink(missing_ok=True)
    r = subprocess.run([docker, "run", "--rm", "--cidfile", str(cidfile), image, "true"],
                       env=env, capture_output=True, text=True, timeout=120)
    try:
        ids.add(cidfile.read_text().strip())
    except OSError:
        pass
    if r.returncode != 0:
        print(f"  docker run failed ({r.returncode}): {r.stderr.strip()[-300:]}", file=sys.stderr)
    return r.returncode == 0


# --- the runtime -------------------------------------------------------------------------------

def soak_runtime(cycles: int, runtime: str, settle: float) -> bool:
    from support import make_bundle

    import prctl
    # Like a shim: the inits, orphaned when `create` exits, become our children to reap.
    prctl.set_child_subreaper(True)
    work = Path(tempfile.mkdtemp(prefix="lksoak-rt-", dir="/tmp"))
    parent = f"/lksoak-{os.getpid()}"
    try:
        bundle = make_bundle(work / "bundle", ["true"])
        config = json.loads((bundle / "config.json").read_text())
        config["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 64}}
        (bundle / "config.json").write_text(json.dumps(config))
        root = work / "root"
        argv = [runtime, "--root", str(root), "--log", str(work / "log.json"),
                "--log-format", "json"]
        needles = [str(work)]

        def snapshot() -> dict[str, int]:
            mounts, nsfs = mount_lines([], needles)
            return {"mounts": mounts, "cgroups": cgroup_dirs(parent, None),
                    "netns (nsfs mounts)": nsfs, "netns (/run/netns)": netns_entries(),
                    "processes": processes([os.getpid()], needles, {os.getpid()}),
                    "state (runtime root)": entries(root) if root.exists() else 0,
                    "fds (this script)": fds(os.getpid())}

        before = settled(snapshot, settle)
        failures = 0
        start = time.monotonic()
        for i in range(cycles):
            cid = f"soak-{i}"
            config["linux"]["cgroupsPath"] = f"{parent}/{cid}"
            (bundle / "config.json").write_text(json.dumps(config))
            if not lifecycle(argv, bundle, cid):
                failures += 1
                if failures > max(3, cycles // 20):
                    print(f"runtime: giving up after {failures} failed cycles", file=sys.stderr)
                    break
            if (i + 1) % 200 == 0:
                print(f"  runtime: {i + 1}/{cycles}", file=sys.stderr, flush=True)
        elapsed = time.monotonic() - start
        after = settled(snapshot, settle)
        return report(f"runtime: {os.path.basename(runtime)} create/start/delete", before, after,
                      elapsed, cycles, failures)
    finally:
        # a cycle that failed halfway: its container first (the cgroups go only once empty)
        for cid in os.listdir(work / "root") if (work / "root").is_dir() else []:
            subprocess.run([runtime, "--root", str(work / "root"), "delete", "--force", cid],
                           capture_output=True, timeout=60)
        for hierarchy in cgroup_hierarchies():
            top = os.path.join(hierarchy, parent.strip("/"))
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
        shutil.rmtree(work, ignore_errors=True)


def lifecycle(argv: list[str], bundle: Path, cid: str) -> bool:
    """create, start, wait for init (our child: we are a subreaper), delete."""
    # The runtime's stdio becomes the container's: no pipes (reading them would wait for the
    # container), its errors are in the --log file.
    with open(os.devnull, "r+b") as null:
        r = subprocess.run(argv + ["create", "--bundle", str(bundle),
                                   "--pid-file", str(bundle.parent / "init.pid"), cid],
                           stdin=null, stdout=null, stderr=null, timeout=60)
    ok = r.returncode == 0
    if ok:
        pid = int((bundle.parent / "init.pid").read_text())
        ok = subprocess.run(argv + ["start", cid], capture_output=True, timeout=60).returncode == 0
        if not ok:
            os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    else:
        print(f"  create {cid} failed: {last_error(argv)}", file=sys.stderr)
    # plain delete, as the shim does it once the container has stopped (--force is for the
    # clean-up of a failed cycle)
    d = subprocess.run(argv + ["delete", cid], capture_output=True, timeout=60)
    return ok and d.returncode == 0


def last_error(argv: list[str]) -> str:
    """The last error record of the runtime's --log file."""
    log = argv[argv.index("--log") + 1]
    try:
        records = [json.loads(line) for line in Path(log).read_text().splitlines() if line]
    except (OSError, ValueError):
        return "(no log)"
    return next((r.get("msg", "") for r in reversed(records) if r.get("level") == "error"), "?")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--cycles", type=int, default=1000, help="cycles of each (default 1000)")
    ap.add_argument("--skip-engine", action="store_true", help="only the runtime")
    ap.add_argument("--skip-runtime", action="store_true", help="only the engine")
    ap.add_argument("--image", default="busybox")
    ap.add_argument("--docker", default=shutil.which("docker") or "docker")
    ap.add_argument("--runtime", default=shutil.which("labkit-runc") or "labkit-runc",
                    help="the runtime program (default: labkit-runc on PATH)")
    ap.add_argument("--settle", type=float, default=20,
                    help="seconds to wait for the counts to stop moving (default 20)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("soak: containers need root", file=sys.stderr)
        return 2
    ok = True
    if not args.skip_runtime:
        ok &= soak_runtime(args.cycles, args.runtime, args.settle)
    if not args.skip_engine:
        ok &= soak_engine(args.cycles, args.image, args.docker, args.settle)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
