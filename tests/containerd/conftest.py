"""Fixtures shared by labkit-containerd's tests: short temporary roots and tracked mounts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from labkit.containerd import mount as mountlib
from support import short_tmpdir


@pytest.fixture
def short_tmp():
    """A temporary directory with a short path (unix sockets, overlay options)."""
    with short_tmpdir("lkc-") as d:
        try:
            yield d
        finally:
            # Never rmtree through a mount: undo any mount left below d first.
            for point in _mounts_under(d):
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


def _mounts_under(d: Path) -> list[str]:
    real = os.path.realpath(d)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].encode().decode("unicode_escape") for line in f]
    return sorted((p for p in points if p.startswith(real + "/")), key=len, reverse=True)


def mounts_under(d: Path) -> list[str]:
    return _mounts_under(d)
