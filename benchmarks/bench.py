#!/usr/bin/env python3
"""labkit's benchmark: how much slower is a Python engine than the real one, layer by layer?

Two measurements, each repeated N times on this machine, reported as median (and min/max)
wall-clock seconds and as a ratio to the real component:

  engine    `docker run --rm hello-world` end to end — the real docker CLI against the lab's
            labkit-dockerd (which drives labkit-containerd, labkit-shim and the configured
            runtime), and against a real dockerd: --start-real-dockerd starts a private one
            (Debian's dockerd 20.10 and containerd 1.6 on their own sockets, a bridge of
            their own, no iptables; all removed afterwards), --real-docker-host names one.
            Also `docker run --rm busybox true`. The engines take turns, run by run.
  runtime   `<runtime> run` of the same busybox bundle running `true`, for labkit-runc, runc
            and crun: only L1, the part that talks to the kernel; and the same container as
            the shim drives it: `create`, `start`, (its exit), `delete`, timed together.
            The runtimes take turns, run by run (labkit-runc, runc, crun, labkit-runc, …),
            so that a burst of load on the machine slows them all alike.

Usage (as root, from anywhere):
    labkit lab up
    /opt/labkit/venv/bin/python benchmarks/bench.py                 # both, 10 iterations
    /opt/labkit/venv/bin/python benchmarks/bench.py -n 3 --skip-engine
    /opt/labkit/venv/bin/python benchmarks/bench.py --start-real-dockerd --skip-runtime

The first run of each engine is a warm-up (it may pull the image) and is not counted. Medians,
not means: one slow outlier (a page cache miss, a cgroup being created) should not decide.

labkit-runc is a Python program: every command pays for the interpreter's start-up. It is run
as the lab hands it down to dockerd: LIB/bin/labkit-runc, a script that starts the interpreter
without the site module (labkit.lab.launch.write_program; here written in a work directory).
The floor (`python -S -c pass`, and `labkit-runc --version`: that plus the runtime's command
line; `python -c pass` too, as a console script starts it) is printed with the runtime table,
so that what is left is visible; with the lifecycle table, three times `labkit-runc --version`,
whose three commands each pay for it, and the lifecycle minus three bare interpreter start-ups.
labkit's modules are byte-compiled first (compileall), as an installed package is: with
PYTHONDONTWRITEBYTECODE set, an editable checkout would otherwise be compiled from source on
every command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # tests/support.py builds the busybox bundle

from labkit import paths  # noqa: E402


@dataclass
class Result:
    name: str
    times: list[float] = field(default_factory=list)
    error: str = ""
    note: str = ""   # how it was run, when that is not the plain program

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def timed(argv: list[str], env: dict | None = None) -> float:
    """Run argv to completion; return its wall-clock time; raise RuntimeError on failure.

    No timeout: with one, subprocess waits for the child by polling it with growing sleeps
    (0.5 ms, 1 ms, 2 ms …), which would add milliseconds to commands that take a few."""
    start = time.perf_counter()
    r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        lines = (r.stderr.strip() or r.stdout.strip() or f"exit status {r.returncode}").splitlines()
        raise RuntimeError(lines[0])
    return elapsed


# --- engine: docker run --rm hello-world ----------------------------------------------------

def bench_engines(engines: list[tuple[str, str]], argv: list[str], n: int,
                  docker: str) -> list[Result]:
    """`docker <argv>` against each (name, host), the engines taking turns run by run."""
    results = [Result(name) for name, _ in engines]
    envs = [dict(os.environ, DOCKER_HOST=host) for _, host in engines]
    for res, env in zip(results, envs):
        try:
            timed([docker, *argv], env)  # warm-up: pulls the image on the first run
        except RuntimeError as e:
            res.error = str(e)
    for _ in range(n):
        for res, env in zip(results, envs):
            if res.error:
                continue
            try:
                res.times.append(timed([docker, *argv], env))
            except RuntimeError as e:
                res.error = str(e)
    return results


@contextmanager
def bench_bridge(name: str = "lkbench0", cidr: str = "10.199.77.1/24") -> Iterator[str]:
    """A bridge of our own for the real dockerd's containers (`dockerd -b`), so that both
    engines give containers a network: made with pyroute2, removed afterwards."""
    from pyroute2 import IPRoute
    address, prefix = cidr.split("/")
    with IPRoute() as ip:
        if ip.link_lookup(ifname=name):
            raise RuntimeError(f"{name} exists already: is another benchmark running?")
        ip.link("add", ifname=name, kind="bridge")
        try:
            index = ip.link_lookup(ifname=name)[0]
            ip.addr("add", index=index, address=address, prefixlen=int(prefix))
            ip.link("set", index=index, state="up")
            yield name
        finally:
            ip.link("del", index=ip.link_lookup(ifname=name)[0])


@contextmanager
def real_engine(start: bool, host: str | None) -> Iterator[str | None]:
    """The real dockerd to compare with: the one at `host`, or (start) a private one from
    tests/realdocker.py with a bridge of its own, pulling from the lab's registry."""
    if not start:
        yield host
        return
    from realdocker import private_real_dockerd
    with bench_bridge() as bridge, private_real_dockerd(paths.REGISTRY_ADDR, bridge) as real:
        yield real


# --- runtime: <rt> run on a busybox bundle ---------------------------------------------------

def runtime_argv(name: str, work: Path | None = None) -> list[str]:
    """How to invoke a runtime binary on this host (crun needs help on a cgroup v1 hybrid host:
    labkit.wire.runtime knows how); fall back to the plain program. labkit-runc is run as the
    lab hands it down to dockerd: a script starting it without the site module, written by the
    same function (labkit.lab.launch.write_program), here under `work`."""
    if name == "labkit-runc" and work is not None:
        from labkit.lab.implementations import LAYERS
        from labkit.lab.launch import write_program
        return [str(write_program(work / "bin" / name, name, LAYERS["runtime"].entry))]
    try:
        from labkit.wire.runtime import runtime_argv as argv_for
        return list(argv_for(name))
    except ImportError:
        pass
    beside = Path(sys.executable).parent / name
    found = shutil.which(name) or (str(beside) if beside.exists() else None)
    if not found:
        raise RuntimeError(f"{name} is not installed")
    return [found]


def bench_runtimes(names: list[str], bundle: Path, work: Path, n: int,
                   ) -> tuple[list[Result], list[Result], dict[str, dict[str, list[float]]]]:
    """`run`, and create + start + delete, for each runtime, taking turns run by run; and
    the lifecycle's commands one by one: runtime -> {"create": [times], "start": …}."""
    runs = {name: Result(name) for name in names}
    cycles = {name: Result(name) for name in names}
    commands: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    argvs = {}
    for name in names:
        try:
            argvs[name] = runtime_argv(name, work)
        except RuntimeError as e:
            runs[name].error = cycles[name].error = str(e)
            continue
        argv = argvs[name]
        if Path(argv[0]).name != name and not argv[0].endswith("/" + name):
            runs[name].note = cycles[name].note = \
                f"run as: {' '.join(argv)} (a cgroup v1 hybrid host needs a private mount " \
                "namespace; the wrapper's start-up time is included)"
        elif name == "labkit-runc":
            runs[name].note = cycles[name].note = \
                "run as the lab runs it: python -S (labkit.lab.launch.write_program)"
    # create's init outlives `create`: as a shim does, we become its parent to reap it
    import prctl
    prctl.set_child_subreaper(True)
    # Measurement by measurement, the runtimes in turn (run: labkit-runc, runc, crun; then the
    # lifecycle: labkit-runc, runc, crun …): no runtime is timed right after itself, which
    # would flatter one whose commands are faster warm. runc 1.1 copies its 10 MB binary into
    # a memfd at every create (its CVE-2019-5736 guard): right after its own `run`, that
    # create takes ~26 ms here, after another program's ~36 ms.
    for i in range(n):
        for results, measure in ((runs, run_once), (cycles, lifecycle_once)):
            for name, argv in argvs.items():
                root = ["--root", str(work / f"root-{name}")]
                result = results[name]
                if result.error:
                    continue
                cid = f"bench-{name}-{measure.__name__[0]}{i}"
                try:
                    if measure is lifecycle_once:
                        result.times.append(measure(argv + root, bundle, cid, commands[name]))
                    else:
                        result.times.append(measure(argv + root, bundle, cid))
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    result.error = str(e)
                finally:
                    # `run` deletes the container when it exits; this is for one that failed
                    subprocess.run(argv + root + ["delete", "--force", cid],
                                   capture_output=True, timeout=30)
    return list(runs.values()), list(cycles.values()), commands


def run_once(argv: list[str], bundle: Path, cid: str) -> float:
    return timed(argv + ["run", "--bundle", str(bundle), cid])


def lifecycle_once(argv: list[str], bundle: Path, cid: str,
                   commands: dict[str, list[float]] | None = None) -> float:
    """create, start, wait for the container's exit, delete: one wall-clock time (and each
    command's own, appended to commands["create"] … when given)."""
    pid_file = bundle.parent / f"{cid}.pid"
    start = time.perf_counter()
    with open(os.devnull, "r+b") as null:
        # the runtime's stdio becomes the container's: no pipes, or we would wait for init
        r = subprocess.run(argv + ["create", "--bundle", str(bundle), "--pid-file",
                                   str(pid_file), cid],
                           stdin=null, stdout=null, stderr=null)       # no timeout: see timed
    if r.returncode != 0:
        raise RuntimeError(f"create failed with status {r.returncode}")
    created = time.perf_counter() - start
    pid = int(pid_file.read_text())
    pid_file.unlink()
    started = timed(argv + ["start", cid])
    os.waitpid(pid, 0)                        # init is our child: we are a subreaper
    deleted = timed(argv + ["delete", cid])
    if commands is not None:
        for verb, t in (("create", created), ("start", started), ("delete", deleted)):
            commands.setdefault(verb, []).append(t)
    return time.perf_counter() - start


def floor(n: int, work: Path) -> list[Result]:
    """The floor of a Python runtime on this machine: the interpreter as labkit-runc starts
    it (`python -S -c pass`), and `labkit-runc --version` (that, plus the runtime's command
    line: labkit.runc.main and what it imports). And, for comparison, `python -c pass` as a
    console script starts it, with the site module (with an editable install, most of it)."""
    program = runtime_argv("labkit-runc", work)[0]
    with open(program, "rb") as f:
        interpreter = f.readline()[2:].decode().split()       # its #! line: python -S
    results = [Result(f"python {' '.join(interpreter[1:])} -c pass"),
               Result("labkit-runc --version"), Result("python -c pass (with site)")]
    for _ in range(n):
        results[0].times.append(timed([*interpreter, "-c", "pass"]))
        results[1].times.append(timed([program, "--version"]))
        results[2].times.append(timed([interpreter[0], "-c", "pass"]))
    return results


def three_startups(base: list[Result], cycles: list[Result]) -> list[Result]:
    """The floor of create + start + delete for a Python runtime: three commands, each paying
    for an interpreter start-up and the command line (`labkit-runc --version`), before any
    container work. Printed with the lifecycle, so that its ratio says how much of the gap to
    runc no change to the runtime's own code can close; and the lifecycle without the three
    bare interpreter start-ups (`python -S -c pass`, run by run), the floor-adjusted figure."""
    rows = []
    version = next((r for r in base if r.name == "labkit-runc --version"), None)
    if version is not None:
        rows.append(Result("3 x labkit-runc --version", [3 * t for t in version.times]))
    python = base[0] if base else None
    ours = next((r for r in cycles if r.name == "labkit-runc" and r.times), None)
    if python is not None and ours is not None:
        rows.append(Result(f"labkit-runc minus 3 x {python.name}",
                           [c - 3 * p for c, p in zip(ours.times, python.times)]))
    return rows


# --- output ----------------------------------------------------------------------------------

def print_table(title: str, results: list[Result], baseline: str) -> None:
    print(title)
    base = next((r for r in results if r.name == baseline and r.times), None)
    header = ["", "MEDIAN", "MIN", "MAX", f"RATIO (vs {baseline})" if base else "RATIO"]
    rows = []
    for r in results:
        if not r.times:
            rows.append([r.name, "failed", "", "", ""])
            continue
        ratio = f"{r.median / base.median:.2f}x" if base else "-"
        rows.append([r.name, f"{r.median:.3f}s", f"{min(r.times):.3f}s", f"{max(r.times):.3f}s", ratio])
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  " + "   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    for r in results:
        if r.error:
            print(f"  {r.name} failed: {r.error}")
        if r.note:
            print(f"  note: {r.name} {r.note}")
    print()


def print_commands(title: str, commands: dict[str, dict[str, list[float]]], baseline: str) -> None:
    """Median milliseconds of each command, with its ratio to the baseline runtime's."""
    verbs = ["create", "start", "delete"]
    base = commands.get(baseline) or {}
    rows = [["", *verbs]]
    for name, times in commands.items():
        if not all(times.get(v) for v in verbs):
            continue
        row = [name]
        for v in verbs:
            cell = f"{statistics.median(times[v]) * 1000:.1f} ms"
            if name != baseline and base.get(v):
                cell += f" ({statistics.median(times[v]) / statistics.median(base[v]):.2f}x)"
            row.append(cell)
        rows.append(row)
    print(title)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--iterations", type=int, default=10, help="runs per measurement (default 10)")
    ap.add_argument("--skip-engine", action="store_true", help="only the runtime measurement")
    ap.add_argument("--skip-runtime", action="store_true", help="only the engine measurement")
    ap.add_argument("--lab-host", default=f"unix://{paths.DOCKER_SOCK}",
                    help="labkit-dockerd's address (default: the lab's socket)")
    ap.add_argument("--real-docker-host", help="a real dockerd to compare with, e.g. unix:///run/docker.sock")
    ap.add_argument("--start-real-dockerd", action="store_true",
                    help="start a private real dockerd 20.10 + containerd (Debian's) to compare "
                         "with: own sockets, own bridge, no iptables; removed afterwards")
    ap.add_argument("--image", default="hello-world")
    ap.add_argument("--docker", default=shutil.which("docker") or "docker", help="the docker CLI to use")
    ap.add_argument("--runtimes", default="labkit-runc,runc,crun",
                    help="comma-separated runtimes to compare (default labkit-runc,runc,crun)")
    args = ap.parse_args(argv)
    if args.iterations < 1:
        ap.error("--iterations must be at least 1")

    print(f"labkit benchmark: {args.iterations} iteration(s) each, wall-clock seconds\n")
    all_results: list[Result] = []
    if not args.skip_engine:
        with real_engine(args.start_real_dockerd, args.real_docker_host) as real:
            engines = [("labkit-dockerd", args.lab_host)] + ([("dockerd", real)] if real else [])
            for command in (["run", "--rm", args.image], ["run", "--rm", "busybox", "true"]):
                results = bench_engines(engines, command, args.iterations, args.docker)
                print_table(f"engine: docker {' '.join(command)} (docker CLI, end to end; "
                            "the engines take turns)", results, "dockerd")
                all_results += results
    if not args.skip_runtime:
        if os.geteuid() != 0:
            print("runtime: skipped (creating containers needs root)\n")
        else:
            from support import make_bundle

            import compileall
            compileall.compile_dir(REPO / "labkit", quiet=1)
            work = Path(tempfile.mkdtemp(prefix="lkbench-", dir="/tmp"))
            try:
                bundle = make_bundle(work / "bundle", ["true"])
                runs, cycles, commands = bench_runtimes(
                    [rt for rt in args.runtimes.split(",") if rt], bundle, work, args.iterations)
                base = floor(args.iterations, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            print_table("runtime: <runtime> run on a busybox bundle running `true`",
                        runs + base, "runc")
            print_table("runtime: <runtime> create + start + (exit) + delete, same bundle",
                        cycles + three_startups(base, cycles), "runc")
            print_commands("runtime: each command of that lifecycle (median; ratio vs runc)",
                           commands, "runc")
            all_results += runs + cycles
    return 0 if any(r.times for r in all_results) or not all_results else 1


if __name__ == "__main__":
    sys.exit(main())
