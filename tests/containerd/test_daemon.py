"""The daemon object without gRPC: boot-time clean-up after an interrupted pull."""

from __future__ import annotations

import pytest

from labkit.containerd import mount as mountlib
from labkit.containerd.errors import NotFound
from labkit.containerd.server import Daemon
from labkit.lab.reset import mounts_under

pytestmark = pytest.mark.root


def test_cleanup_after_interrupted_pull(short_tmp):
    d = Daemon(short_tmp / "root", short_tmp / "state", str(short_tmp / "c.sock"))
    try:
        snap = d.snapshotter("moby")
        snap.prepare("base")
        snap.commit("sha256:base", "base", {"containerd.io/gc.root": "kept"})
        snap.prepare("loose")
        snap.commit("sha256:loose", "loose")      # nothing refers to it: garbage
        mounts = snap.prepare("extract-123 sha256:next", "sha256:base")
        target = short_tmp / "state" / "tmpmounts" / "x1"
        target.mkdir(parents=True)
        mountlib.mount_all(mounts, str(target))       # as if we died while extracting
        (short_tmp / "root" / "snapshots" / "999" / "fs").mkdir(parents=True)  # orphan

        d.cleanup()

        assert mounts_under([short_tmp]) == []
        assert not target.exists()
        with pytest.raises(NotFound):
            snap.stat("extract-123 sha256:next")
        assert snap.stat("sha256:base").kind == "committed"
        with pytest.raises(NotFound):
            snap.stat("sha256:loose")             # the boot's garbage collection
        assert not (short_tmp / "root" / "snapshots" / "999").exists()
    finally:
        d.close()
