"""Fixtures for the course machinery's tests: a tiny reference package with solution regions.

Everything lives in temporary directories; nothing here is a course checkpoint (the sample
checkpoint suites are written to tmp dirs by the tests and graded in a subprocess).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import short_tmpdir

NS_PY = '''\
"""A sample module; its docstring quotes a marker that must be ignored:
    # BEGIN SOLUTION
"""
import socket

# BEGIN SOLUTION hint="unshare(2): the CLONE_NEW* flags"
CLONE_NEWUTS = 0x04000000
LIMIT: int = 64
# END SOLUTION


def sethostname(name: str) -> str:
    """Give the UTS namespace a name."""
    if name:
        # BEGIN SOLUTION hint="sethostname(2)"
        # HINT: Python wraps it: socket.sethostname
        # TODO: check the name, then return it
        # solution-only comment: SECRET-1
        checked = name.strip()  # SECRET-2
        return checked
        # END SOLUTION
    return "empty"


class Runtime:
    """A runtime."""

    def outer(self):
        def inner():
            # BEGIN SOLUTION
            # HINT: runc(8)
            return "SECRET-3"
            # END SOLUTION
        return inner()

    # BEGIN SOLUTION
    # HINT: runtime-spec, section "Lifecycle"
    @staticmethod
    def create(x: int,
               y: int) -> int:
        """Add two numbers."""
        # SECRET-4
        return x + y
    # END SOLUTION


# BEGIN SOLUTION hint="man 7 namespaces"
class Helper:
    """Helps."""
    value = "SECRET-5"
    def go(self): return "SECRET-6"
# END SOLUTION
'''

MAIN_PY = '''\
import sys


def main() -> int:
    print("runtime", " ".join(sys.argv[1:]))
    # BEGIN SOLUTION hint="runc(8): the exit status"
    return 0
    # END SOLUTION
'''


@pytest.fixture
def sample_pkg(tmp_path: Path) -> Path:
    """A reference package shaped like labkit: ns.py with exercises, runc/main.py, a data file."""
    pkg = tmp_path / "labkit"
    (pkg / "runc").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""sample reference"""\n')
    (pkg / "ns.py").write_text(NS_PY)
    (pkg / "runc" / "__init__.py").write_text("")
    (pkg / "runc" / "main.py").write_text(MAIN_PY)
    (pkg / "spec.json").write_text('{"ociVersion": "1.0.2"}\n')
    (pkg / "course").mkdir()                      # the grading machinery: not mirrored
    (pkg / "course" / "__init__.py").write_text("")
    return pkg


@pytest.fixture
def short_tmp():
    """A short directory under /tmp (workspace paths end up in wrapper scripts and messages)."""
    with short_tmpdir("lk-course-") as path:
        yield path
