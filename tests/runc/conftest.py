"""Fixtures for the OCI runtime contract suite: one set of black-box tests, run against
every runc-compatible runtime installed here (labkit-runc, runc, crun).

`rt` is a RuntimeUnderTest: the binary, a private --root under /tmp, and helpers that
make a bundle (tests/support.py's busybox rootfs and base spec, with one field changed),
run it, and clean up. Every container a test makes is `delete --force`d at teardown and
every directory removed, whether the test passed or not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from labkit.wire.runtime import OCIRuntimeError, Runtime
from support import base_spec, cgroup_dirs, make_busybox_rootfs

RUNTIMES = ["labkit-runc", "runc", "crun"]


def find_runtime(name: str) -> str | None:
    if name == "labkit-runc":
        # the console script installed next to the interpreter running the tests
        beside = Path(sys.executable).parent / "labkit-runc"
        return str(beside) if beside.exists() else shutil.which(name)
    return shutil.which(name)


@dataclass
class RuntimeUnderTest:
    name: str
    binary: str
    root: str                       # --root, under a private /tmp directory
    workdir: Path
    ids: list[str] = field(default_factory=list)
    cgroup_parents: list[str] = field(default_factory=list)

    @property
    def api(self) -> Runtime:
        return Runtime(self.binary, self.root)

    def cli(self, *args: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        """Run the runtime's command line (with --log in JSON, as the shim does)."""
        argv = self.api.argv(*args)
        if "input" not in kw:
            kw["stdin"] = subprocess.DEVNULL
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)

    def last_error(self) -> str:
        """The msg of the last error record in the --log file."""
        msg = ""
        try:
            lines = Path(self.api.log).read_text().splitlines()
        except FileNotFoundError:
            return ""
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("level") == "error":
                msg = record.get("msg", "")
        return msg

    def new_id(self) -> str:
        cid = "t" + uuid.uuid4().hex[:10]
        self.ids.append(cid)
        return cid

    def bundle(self, args: list[str], edit=None, **spec_kw) -> Path:
        """A bundle running `args`; `edit(spec, bundle)` changes the one field under test."""
        bundle = Path(tempfile.mkdtemp(dir=self.workdir, prefix="b"))
        make_busybox_rootfs(bundle / "rootfs")
        spec = base_spec(args, **spec_kw)
        if edit:
            edit(spec, bundle)
        (bundle / "config.json").write_text(json.dumps(spec, indent=2))
        return bundle

    def run(self, args: list[str], edit=None, timeout: float = 30, **spec_kw):
        """`<runtime> run` in the foreground: returns (exit status, stdout, stderr)."""
        bundle = self.bundle(args, edit, **spec_kw)
        cid = self.new_id()
        p = self.cli("run", "--bundle", str(bundle), cid, timeout=timeout)
        return p.returncode, p.stdout, p.stderr

    def cgroup_path(self, cid: str) -> str:
        """A cgroupsPath under a parent this test removes afterwards."""
        parent = f"/labkit-test-{uuid.uuid4().hex[:8]}"
        self.cgroup_parents.append(parent)
        return f"{parent}/{cid}"

    def cleanup(self) -> None:
        for cid in self.ids:
            try:
                self.api.delete(cid, force=True)
            except OCIRuntimeError:
                pass
        for parent in self.cgroup_parents:
            # the test's own top directory, in every hierarchy (v1) or the one tree (v2)
            for d in cgroup_dirs(parent, every_cgroup2=True):
                if d.is_dir():
                    for child in sorted(d.rglob("*"), reverse=True):
                        if child.is_dir():
                            _rmdir_retry(child)
                    _rmdir_retry(d)
        shutil.rmtree(self.workdir, ignore_errors=True)
        Path(self.api.log).unlink(missing_ok=True)


def _rmdir_retry(d: Path) -> None:
    for _ in range(50):
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


@pytest.fixture(params=RUNTIMES)
def rt(request):
    if os.geteuid() != 0:
        pytest.skip("the runtime contract needs root")
    binary = find_runtime(request.param)
    if binary is None:
        pytest.skip(f"{request.param} is not installed (not on PATH)")
    workdir = Path(tempfile.mkdtemp(dir="/tmp", prefix="lkrt-"))
    runtime = RuntimeUnderTest(request.param, binary, str(workdir / "root"), workdir)
    try:
        yield runtime
    finally:
        runtime.cleanup()
