"""Layer apply: file types and metadata, whiteouts (both representations), hostile layers."""

from __future__ import annotations

import io
import os
import stat

import pytest

from labkit.containerd.apply import apply_layer
from labkit.containerd.errors import InvalidArgument
from labkit.containerd.metadata import MetadataStore
from labkit.containerd.snapshots import OverlaySnapshotter

from .layers import entry, gz, make_tar, sha

pytestmark = pytest.mark.root


@pytest.fixture
def root(short_tmp):
    r = short_tmp / "rootfs"
    r.mkdir()
    return r


def test_types_modes_owners_xattrs_and_diff_id(root):
    tar = make_tar(
        entry("bin/", "dir"),
        entry("bin/tool", "file", b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=1001),
        entry("bin/alias", "symlink", link="tool"),
        entry("bin/hard", "hardlink", link="bin/tool"),
        entry("dev/", "dir"),
        entry("dev/null", "char", mode=0o666, dev=(1, 3)),
        entry("run/pipe", "fifo", mode=0o600),
        entry("etc/tagged", "file", b"x", xattrs={"user.labkit": "yes"}),
    )
    result = apply_layer(io.BytesIO(gz(tar)), root, diff_id=sha(tar))
    assert result.diff_id == sha(tar) and result.size == len(tar)
    st = os.stat(root / "bin/tool")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and (st.st_uid, st.st_gid) == (1000, 1001)
    assert st.st_mtime == 1_700_000_000
    assert os.readlink(root / "bin/alias") == "tool"
    assert os.stat(root / "bin/hard").st_ino == st.st_ino
    dev = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(dev.st_mode) and os.major(dev.st_rdev) == 1 and os.minor(dev.st_rdev) == 3
    assert stat.S_ISFIFO(os.lstat(root / "run/pipe").st_mode)
    assert os.getxattr(root / "etc/tagged", "user.labkit") == b"yes"
    assert os.stat(root / "bin").st_mtime == 1_700_000_000  # set after its children


def test_plain_tar_and_wrong_diff_id(root):
    tar = make_tar(entry("a", "file", b"1"))
    assert apply_layer(io.BytesIO(tar), root).diff_id == sha(tar)
    with pytest.raises(InvalidArgument, match="diff id mismatch"):
        apply_layer(io.BytesIO(tar), root, diff_id=sha(b"other"))


def test_corrupt_gzip_is_a_clear_error(root):
    data = gz(make_tar(entry("a", "file", os.urandom(20000))))
    bad = data[: len(data) // 2]
    with pytest.raises(InvalidArgument, match="corrupt|not a valid tar"):
        apply_layer(io.BytesIO(bad), root)


def test_whiteouts_remove_mode(root):
    apply_layer(io.BytesIO(make_tar(
        entry("gone", "file", b"x"), entry("keep", "file", b"x"),
        entry("opq/", "dir"), entry("opq/old1", "file"), entry("opq/old2", "file"))), root)
    apply_layer(io.BytesIO(make_tar(
        entry(".wh.gone", "file"),
        entry("opq/new-before", "file", b"n"),    # written before the marker: must survive
        entry("opq/.wh..wh..opq", "file"),
        entry("opq/new-after", "file", b"n"),
        entry(".wh..wh.plnk", "file"),            # reserved name: ignored
    )), root)
    assert sorted(os.listdir(root)) == ["keep", "opq"]
    assert sorted(os.listdir(root / "opq")) == ["new-after", "new-before"]


def test_whiteout_does_not_hide_same_layer(root):
    apply_layer(io.BytesIO(make_tar(entry("x", "file", b"mine"), entry(".wh.x", "file"))), root)
    assert (root / "x").read_bytes() == b"mine"


def test_whiteouts_overlay_mode(root):
    apply_layer(io.BytesIO(make_tar(entry(".wh.gone", "file"), entry("d/.wh..wh..opq", "file"),
                                    entry("d/f", "file", b"1"))), root, whiteouts="overlay")
    st = os.lstat(root / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(root / "d", "trusted.overlay.opaque") == b"y"
    assert not (root / "d/.wh..wh..opq").exists() and (root / "d/f").exists()


def test_whiteouts_through_a_real_overlay(short_tmp, mounter):
    snap = OverlaySnapshotter(short_tmp / "c", MetadataStore(short_tmp / "c/meta.db"), "t")
    one = make_tar(entry("etc/", "dir"), entry("etc/motd", "file", b"hi"),
                   entry("usr/", "dir"), entry("usr/a", "file"), entry("usr/b", "file"))
    two = make_tar(entry("etc/.wh.motd", "file"), entry("usr/.wh..wh..opq", "file"),
                   entry("usr/c", "file", b"c"))
    target = mounter(snap.prepare("x1"))
    apply_layer(io.BytesIO(one), target)
    mounter.release(target)
    snap.commit("l1", "x1")
    target = mounter(snap.prepare("x2", "l1"))
    apply_layer(io.BytesIO(two), target)
    mounter.release(target)
    snap.commit("l2", "x2")
    view = mounter(snap.view("v", "l2"))
    assert os.listdir(view / "etc") == [] and os.listdir(view / "usr") == ["c"]
    low = mounter(snap.view("v1", "l1"))
    assert (low / "etc/motd").read_bytes() == b"hi"


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "/../escape"])
def test_traversal_rejected(root, name):
    with pytest.raises(InvalidArgument, match="escapes the root"):
        apply_layer(io.BytesIO(make_tar(entry(name, "file", b"x"))), root)
    assert not (root.parent / "escape").exists()


def test_hardlink_outside_rejected(root):
    with pytest.raises(InvalidArgument, match="escapes the root"):
        apply_layer(io.BytesIO(make_tar(entry("h", "hardlink", link="../../etc/passwd"))), root)


def test_symlinks_resolve_inside_the_root(root, short_tmp):
    outside = short_tmp / "outside"
    outside.mkdir()
    apply_layer(io.BytesIO(make_tar(
        entry("usr/lib/", "dir"),
        entry("lib", "symlink", link="/usr/lib"),          # absolute: means <root>/usr/lib
        entry("lib/x", "file", b"x"),
        entry("up", "symlink", link="../../../../" + str(outside).lstrip("/")),
        entry("up/y", "file", b"y"),                       # .. clamps at the root
        entry("abs", "symlink", link=str(outside)),
        entry("abs/z", "file", b"z"),
    )), root)
    assert (root / "usr/lib/x").read_bytes() == b"x"
    assert os.listdir(outside) == []
    assert (root / str(outside).lstrip("/") / "y").read_bytes() == b"y"
    assert (root / str(outside).lstrip("/") / "z").read_bytes() == b"z"


def test_entry_replaces_a_symlink_instead_of_writing_through_it(root, short_tmp):
    victim = short_tmp / "victim"
    victim.write_text("safe")
    apply_layer(io.BytesIO(make_tar(entry("f", "symlink", link=str(victim)),
                                    entry("f", "file", b"pwned"))), root)
    assert victim.read_text() == "safe" and (root / "f").read_bytes() == b"pwned"
