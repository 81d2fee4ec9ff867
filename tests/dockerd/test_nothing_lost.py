"""Nothing lost, whatever the timing: a container's output and exit status survive kill -9 of
labkit-containerd and labkit-dockerd at any moment.

20 short containers, started 4 at a time, go through 5 rounds of "kill -9 both daemons,
start them again" (on the private stack of conftest.py; the daemons are ended by PID). The
kill lands while a round's containers are being started, or later; a container whose
`docker run` it cut short is started again if it never started. The containers differ in
when they write and when they exit, so that the kills land before a container starts
writing, while it writes (more than a fifo holds, too), and after it exited; some exit while
the daemons are down. Rounds alternate which daemon comes back first (dockerd
first: its live restore finds containerd away). Then every container must have exited with its
own code, and `docker logs` must give every byte it wrote, on the right stream, in order.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time

import pytest

from dockerd.conftest import DOCKER, processes_mentioning
from dockerd.test_e2e import docker
from labkit.lab.reset import mounts_under

pytestmark = [pytest.mark.root, pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")]

ROUNDS = 5
PER_ROUND = 4
BUDGET = 120   # seconds for the whole test on a loaded 2-core machine


def plan(k: int) -> tuple[str, bytes, bytes, int]:
    """Container k's shell script, the stdout and stderr it writes, and its exit code."""
    code = 10 + k
    if k % 5 == 4:
        # More than a fifo holds (64 KiB): the shim blocks while nobody reads, and goes on.
        delay = (0, 0.4, 1.2)[k % 3]
        out = "".join(f"{i}\n" for i in range(1, 20001)).encode()
        return f"sleep {delay}; seq 1 20000; echo done >&2; exit {code}", out, b"done\n", code
    before = (0, 0.2, 0.6, 1.5)[k % 4]          # some start writing only after a kill
    lines = (1, 6, 25)[k % 3]
    pause = (0, 0.05, 0.1)[(k // 3) % 3]       # some write across a kill, some at once
    script = (f"sleep {before}; i=0; while [ $i -lt {lines} ]; do i=$((i+1)); "
              f"echo c{k} out $i; echo c{k} err $i >&2; sleep {pause}; done; exit {code}")
    out = "".join(f"c{k} out {i}\n" for i in range(1, lines + 1)).encode()
    err = "".join(f"c{k} err {i}\n" for i in range(1, lines + 1)).encode()
    return script, out, err, code


def test_output_and_exit_codes_survive_kill_9_of_both_daemons(stack, docker_env):
    started = time.monotonic()
    rng = random.Random(10)   # the same timings every run; they still land differently
    assert docker(docker_env, "pull", "busybox").returncode == 0
    names = [f"lost-{k}" for k in range(ROUNDS * PER_ROUND)]

    def run(k: int) -> None:
        docker(docker_env, "run", "-d", "--name", names[k], "busybox", "sh", "-c", plan(k)[0])

    def run_once(k: int) -> None:
        """Make sure container k runs once: a kill may have cut its `docker run` short."""
        state = docker(docker_env, "inspect", "-f", "{{.State.Status}}", names[k])
        if state.returncode != 0:        # never created: run it
            r = docker(docker_env, "run", "-d", "--name", names[k], "busybox", "sh", "-c",
                       plan(k)[0])
        elif state.stdout.strip() == "created":   # created, never started: start it
            r = docker(docker_env, "start", names[k])
        else:
            return
        assert r.returncode == 0, (names[k], r.stderr)

    starter: threading.Thread | None = None
    try:
        for round in range(ROUNDS):
            batch = range(round * PER_ROUND, (round + 1) * PER_ROUND)
            # The kill lands while the containers are being started, or at some moment of
            # their lives after that.
            starter = threading.Thread(target=lambda ks: [run(k) for k in ks], args=(batch,))
            starter.start()
            time.sleep(rng.uniform(0.1, 2.0))
            stack.crash_and_restart(first="dockerd" if round % 2 else "containerd")
            starter.join(120)
            for k in batch:
                run_once(k)
        ids = [docker(docker_env, "inspect", "-f", "{{.Id}}", name).stdout.strip()
               for name in names]

        for k, name in enumerate(names):
            _, out, err, code = plan(k)
            r = docker(docker_env, "wait", name, timeout=30)
            assert (r.returncode, r.stdout.strip()) == (0, str(code)), (name, r.stderr)
            logs = docker_bytes(docker_env, "logs", name)
            assert logs == (out, err), f"{name}: {len(logs[0])}/{len(out)} bytes of stdout, " \
                                       f"{len(logs[1])}/{len(err)} of stderr"
            state = docker(docker_env, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}",
                           name).stdout.split()
            assert state == ["exited", str(code)], name
        assert time.monotonic() - started < BUDGET
    finally:
        if starter is not None:
            starter.join(120)
        docker(docker_env, "rm", "-f", *names, timeout=120)
    # Every task was deleted: no shim of ours left, no rootfs still mounted.
    bundles = stack.tmp / "cstate" / "io.containerd.runtime.v2.task" / "moby"

    def leftovers() -> list:
        daemons = {p.pid for p in stack.procs}
        found = [(id[:12], processes_mentioning(id, daemons), mounts_under([bundles / id]))
                 for id in ids]
        return [f for f in found if f[1] or f[2]]

    deadline = time.monotonic() + 10
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers() == []


def docker_bytes(env: dict, *args: str) -> tuple[bytes, bytes]:
    """(stdout, stderr) of a docker command, as bytes."""
    r = subprocess.run([DOCKER, *args], env=env, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr
