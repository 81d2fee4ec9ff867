"""The soak (benchmarks/soak.py), short: container lifecycles through the whole engine and
through labkit-runc alone leave nothing behind. The full run is 1000 cycles of each (see the
script); CI runs 50, which takes about a minute. And the soak itself can see a leak: a runtime
that "forgets" to delete is caught."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOAK = REPO / "benchmarks" / "soak.py"


def _soak_module():
    spec = importlib.util.spec_from_file_location("labkit_soak", SOAK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.e2e
def test_fifty_lifecycles_leave_nothing_behind():
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI on PATH (vagrant/setup.sh installs docker.io)")
    r = subprocess.run([sys.executable, str(SOAK), "--cycles", "50", "--settle", "10"],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("nothing left behind") == 2, r.stdout
    assert "runtime: labkit-runc create/start/delete: 50 cycles" in r.stdout
    assert "engine: docker run --rm busybox true: 50 cycles" in r.stdout
    assert ", 0 failed" in r.stdout


@pytest.mark.root
@pytest.mark.slow
def test_the_soak_sees_a_runtime_that_leaves_containers_behind(tmp_path, capsys):
    """A labkit-runc whose plain `delete` does nothing: its state, cgroups and fds… stay. The
    soak must say so (and its own clean-up, `delete --force`, still removes everything)."""
    labkit_runc = shutil.which("labkit-runc")
    if labkit_runc is None:
        pytest.skip("labkit-runc is not on PATH")
    leaky = tmp_path / "leaky-runc"
    leaky.write_text("#!/bin/sh\n"
                     'case " $* " in *" delete "*) case " $* " in *" --force "*) ;; *) exit 0;; esac;; esac\n'
                     f'exec {labkit_runc} "$@"\n')
    leaky.chmod(0o755)
    soak = _soak_module()
    assert soak.soak_runtime(3, str(leaky), settle=2) is False
    out = capsys.readouterr().out
    assert "LEAK:" in out and "state (runtime root)" in out and "cgroups" in out.split("LEAK:")[1]
    # the clean-up removed what the leaky runtime left: no cgroup parent of this pid remains
    leftovers = [h for h in soak.cgroup_hierarchies()
                 if os.path.exists(os.path.join(h, f"lksoak-{os.getpid()}"))]
    assert leftovers == []
