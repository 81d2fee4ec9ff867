"""vagrant/setup.sh: its command line, and that on a host it has set up, a second run is a
quick no-op (that is what makes it safe for the Vagrantfile, the README and CI to share)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[2] / "vagrant" / "setup.sh"
STAMP = Path("/opt/labkit/venv/.labkit-install-stamp")


def test_syntax_and_usage():
    assert subprocess.run(["bash", "-n", str(SETUP)]).returncode == 0
    r = subprocess.run([str(SETUP), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--no-images" in r.stdout and "set -e" not in r.stdout
    r = subprocess.run([str(SETUP), "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option '--bogus'" in r.stderr


@pytest.mark.root
def test_second_run_changes_nothing(tmp_path):
    if not STAMP.exists():
        pytest.skip("this host was not set up by vagrant/setup.sh (no install stamp)")
    installed_from = STAMP.read_text().split()[-1]   # "<sha256> compat <checkout>"
    if Path(installed_from).resolve() != SETUP.parents[1]:
        # Running set-up from this checkout would re-install labkit (editable) from HERE, and
        # every labkit command on the machine would then run this checkout's code.
        pytest.skip(f"labkit was installed from another checkout ({installed_from}), not "
                    f"this one ({SETUP.parents[1]}): set-up from here would re-point it")
    # A first run brings the host up to date (pyproject.toml may have changed since set-up);
    # the second must then find nothing to do.
    first = subprocess.run([str(SETUP), "--no-images"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    # from another directory: the script finds the repository from its own path
    r = subprocess.run([str(SETUP), "--no-images"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "packages: all" in r.stdout and "installing" not in r.stdout
    assert "already installed" in r.stdout and "linked" not in r.stdout
    for cmd in ("labkit", "labkit-runc", "labkit-dockerd"):
        assert os.readlink(f"/usr/local/bin/{cmd}") == f"/opt/labkit/venv/bin/{cmd}"
