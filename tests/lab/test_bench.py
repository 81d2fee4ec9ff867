"""The benchmark runs (runtime part only, one iteration: the engine part needs a running lab)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"


@pytest.mark.root
@pytest.mark.slow
def test_runtime_benchmark_one_iteration():
    runtimes = [rt for rt in ("labkit-runc", "runc") if rt == "labkit-runc" or shutil.which(rt)]
    r = subprocess.run([sys.executable, str(BENCH), "-n", "1", "--skip-engine",
                        "--runtimes", ",".join(runtimes)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert "runtime: <runtime> run on a busybox bundle running `true`" in lines
    for rt in runtimes:
        row = next(line.split() for line in lines if line.strip().startswith(rt + " "))
        assert row[1].endswith("s") and float(row[1][:-1]) > 0, row   # a median, not "failed"
    if "runc" in runtimes:
        assert any(line.split()[-1] == "1.00x" for line in lines if line.strip().startswith("runc "))
    # each command of the lifecycle: create, start, delete, in ms (and ratios against runc)
    table = lines[lines.index("runtime: each command of that lifecycle (median; ratio vs runc)"):]
    row = next(line for line in table if line.strip().startswith("labkit-runc "))
    assert row.count(" ms") == 3, row
    assert ("x)" in row) == ("runc" in runtimes), row
    assert not list(Path("/tmp").glob("lkbench-*")), "the benchmark left its work directory"
