"""A private lab for the notebooks: its own run, data and log directories under /tmp and its
own registry port, through the LABKIT_* environment overrides that labkit.paths honours (the
approach of tests/lab/conftest.py), so executing the chapters never touches a lab in use.

The lab is started once for all notebooks (`labkit lab up`), the course images are pushed
into its registry with labkit.images.build_and_push, and at the end `labkit lab reset` stops
what the lab recorded (daemons, shims, containers — by the PIDs in its state files),
unmounts everything under its directories and removes them; anything still mounted under the
temporary root after that is detached here, and the root goes too — also when a test failed.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import free_port, run_labkit

@dataclass
class NotebookLab:
    root: Path
    env: dict[str, str]          # the environment the notebooks' kernel runs with

    def labkit(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return run_labkit(*args, env=self.env, timeout=timeout)


@contextmanager
def _private_lab():
    """A lab of its own (directories, registry port), up with the lab images; reset and
    removed afterwards, whatever the notebook did to it."""
    root = Path(tempfile.mkdtemp(prefix="lknb-", dir="/tmp"))
    env = dict(os.environ)
    env.pop("DOCKER_HOST", None)
    env.update(LABKIT_RUN_DIR=str(root / "run"), LABKIT_LIB_DIR=str(root / "lib"),
               LABKIT_LOG_DIR=str(root / "log"), LABKIT_REGISTRY_ADDR=f"127.0.0.1:{free_port()}")
    lab = NotebookLab(root, env)
    try:
        r = lab.labkit("lab", "up")
        assert r.returncode == 0, f"labkit lab up failed:\n{r.stdout}{r.stderr}"
        from labkit.images import build_and_push
        build_and_push(env["LABKIT_REGISTRY_ADDR"])
        yield lab
    finally:
        lab.labkit("lab", "reset")
        from labkit import syscalls
        from labkit.lab.reset import mounts_under
        for target in mounts_under([root]):          # deepest first
            try:
                syscalls.umount2(target, syscalls.MNT_DETACH)
            except OSError:
                pass
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def notebook_lab():
    with _private_lab() as lab:
        yield lab


@pytest.fixture
def fresh_notebook_lab():
    """A lab for one notebook only: a chapter run on a blank workspace leaves the lab as the
    student's unfinished layers left it (a network with no bridge, say), which must not be
    the next chapter's starting point."""
    with _private_lab() as lab:
        yield lab
