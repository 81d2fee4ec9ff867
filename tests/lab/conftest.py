"""A private lab for each test: its own run, data and log directories under /tmp and its own
registry and JupyterLab ports (JupyterLab on 127.0.0.1, never the lab's 0.0.0.0:8888), through
the LABKIT_* environment overrides that labkit.paths and labkit.lab.jupyter honour — so these
tests never touch a lab in use on the same host. `labkit lab reset` runs at the end (stopping
whatever the test started, unmounting, removing), and then the temporary root goes too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import REPO, free_port, run_labkit

@dataclass
class PrivateLab:
    root: Path
    env: dict[str, str]

    @property
    def run_dir(self) -> Path:
        return Path(self.env["LABKIT_RUN_DIR"])

    @property
    def lib_dir(self) -> Path:
        return Path(self.env["LABKIT_LIB_DIR"])

    @property
    def log_dir(self) -> Path:
        return Path(self.env["LABKIT_LOG_DIR"])

    @property
    def etc_dir(self) -> Path:
        return Path(self.env["LABKIT_ETC_DIR"])

    @property
    def registry(self) -> str:
        return self.env["LABKIT_REGISTRY_ADDR"]

    @property
    def jupyter_port(self) -> int:
        return int(self.env["LABKIT_JUPYTER_PORT"])

    @property
    def docker_host(self) -> str:
        return f"unix://{self.run_dir}/docker.sock"

    def labkit(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """`labkit ARGS…` in this lab, as a separate process (the way a user runs it)."""
        return run_labkit(*args, env=self.env, timeout=timeout)

    def python(self, code: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def private_lab():
    root = Path(tempfile.mkdtemp(prefix="lkl-", dir="/tmp"))
    env = dict(os.environ)
    env.pop("DOCKER_HOST", None)
    registry_port = free_port()
    env.update(LABKIT_RUN_DIR=str(root / "run"), LABKIT_LIB_DIR=str(root / "lib"),
               LABKIT_LOG_DIR=str(root / "log"), LABKIT_REGISTRY_ADDR=f"127.0.0.1:{registry_port}",
               # no implementations.toml there: every layer is the reference unless a test says
               LABKIT_ETC_DIR=str(root / "etc"),
               LABKIT_JUPYTER_IP="127.0.0.1",
               LABKIT_JUPYTER_PORT=str(free_port(avoid=(registry_port,))))
    for variable in [v for v in env if v.startswith("LABKIT_IMPL")]:
        del env[variable]   # the tests choose their implementations themselves
    lab = PrivateLab(root, env)
    try:
        yield lab
    finally:
        lab.labkit("lab", "reset")
        shutil.rmtree(root, ignore_errors=True)
