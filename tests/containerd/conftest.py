"""Fixtures shared by labkit-containerd's tests: short temporary roots and tracked mounts."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from labkit.containerd import mount as mountlib
from labkit.lab.reset import mounts_under
from support import short_tmpdir


@pytest.fixture
def short_tmp():
    """A temporary directory with a short path (unix sockets, overlay options)."""
    with short_tmpdir("lkc-") as d:
        try:
            yield d
        finally:
            # Never rmtree through a mount: undo any mount left below d first.
            for point in mounts_under([d]):   # deepest first
                mountlib.unmount_all(point)


class Mounter:
    """Performs mount descriptions on fresh directories and undoes them all at the end."""

    def __init__(self, base: Path) -> None:
        self.base, self.points = base, []

    def __call__(self, mounts) -> Path:
        target = Path(tempfile.mkdtemp(prefix="m-", dir=self.base))
        mountlib.mount_all(mounts, str(target))
        self.points.append(target)
        return target

    def release(self, target: Path) -> None:
        mountlib.unmount_all(str(target))
        self.points.remove(target)

    def close(self) -> None:
        for p in reversed(self.points):
            mountlib.unmount_all(str(p))
        self.points.clear()


@pytest.fixture
def mounter(short_tmp):
    m = Mounter(short_tmp)
    try:
        yield m
    finally:
        m.close()

