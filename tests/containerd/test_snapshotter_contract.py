"""Contract suite for snapshotters, run against real mounts (overlayfs in a temp directory).

A snapshotter only *describes* mounts; these tests perform them (tracked by the `mounter`
fixture, which unmounts everything even when a test fails) and look at the files.
To check another snapshotter, add its factory to FACTORIES: factory(root) -> Snapshotter.
"""

from __future__ import annotations

import os
import stat

import pytest

from labkit.containerd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from labkit.containerd.metadata import MetadataStore
from labkit.containerd.snapshots import OverlaySnapshotter

pytestmark = pytest.mark.root


def _overlay(root):
    return OverlaySnapshotter(root, MetadataStore(root / "meta.db"), "test")


FACTORIES = {"overlayfs": _overlay}


@pytest.fixture(params=sorted(FACTORIES))
def snap(request, short_tmp):
    return FACTORIES[request.param](short_tmp / "root")


def test_prepare_commit_view_chain(snap, mounter):
    base = mounter(snap.prepare("extract-1"))
    (base / "a").write_text("one")
    (base / "d").mkdir()
    (base / "d" / "x").write_text("x")
    mounter.release(base)
    snap.commit("layer-1", "extract-1")
    assert snap.stat("layer-1").kind == "committed"
    with pytest.raises(NotFound):
        snap.stat("extract-1")

    upper = mounter(snap.prepare("extract-2", "layer-1"))
    assert (upper / "a").read_text() == "one"   # the parent shows through
    (upper / "b").write_text("two")
    (upper / "a").write_text("changed")          # copy-up: the parent keeps "one"
    mounter.release(upper)
    snap.commit("layer-2", "extract-2")

    view = mounter(snap.view("look", "layer-2"))
    assert (view / "a").read_text() == "changed" and (view / "b").read_text() == "two"
    with pytest.raises(OSError):
        (view / "c").write_text("no")            # views are read-only
    one = mounter(snap.view("look-1", "layer-1"))
    assert (one / "a").read_text() == "one" and not (one / "b").exists()
    with pytest.raises(OSError):
        (one / "c").write_text("no")

    kinds = {i.name: (i.kind, i.parent) for i in snap.list()}
    assert kinds == {"layer-1": ("committed", ""), "layer-2": ("committed", "layer-1"),
                     "look": ("view", "layer-2"), "look-1": ("view", "layer-1")}


def test_whiteout_and_opaque_through_overlay(snap, mounter):
    base = mounter(snap.prepare("k1"))
    (base / "gone").write_text("x")
    (base / "dir").mkdir()
    (base / "dir" / "old").write_text("x")
    mounter.release(base)
    snap.commit("l1", "k1")

    top = mounter(snap.prepare("k2", "l1"))
    os.unlink(top / "gone")                       # kernel writes a whiteout in upperdir
    for child in (top / "dir").iterdir():
        child.unlink()
    (top / "dir" / "new").write_text("y")
    mounter.release(top)
    snap.commit("l2", "k2")

    view = mounter(snap.view("v", "l2"))
    assert not (view / "gone").exists()
    assert sorted(os.listdir(view / "dir")) == ["new"]
    # ...while the lower layer still has everything
    lower = mounter(snap.view("v1", "l1"))
    assert (lower / "gone").exists() and (lower / "dir" / "old").exists()


def test_whiteout_device_in_upperdir_hides_lower(snap, mounter):
    """The on-disk form INTERFACES §3.3 describes: char 0/0 and the opaque xattr."""
    base = mounter(snap.prepare("k1"))
    (base / "f").write_text("x")
    (base / "d").mkdir()
    (base / "d" / "old").write_text("x")
    mounter.release(base)
    snap.commit("l1", "k1")
    mounts = snap.prepare("k2", "l1")
    if mounts[0].type != "overlay":
        pytest.skip("not an overlay snapshotter")
    upper = next(o.split("=", 1)[1] for o in mounts[0].options if o.startswith("upperdir="))
    os.mknod(os.path.join(upper, "f"), stat.S_IFCHR, os.makedev(0, 0))
    os.mkdir(os.path.join(upper, "d"))
    os.setxattr(os.path.join(upper, "d"), "trusted.overlay.opaque", b"y")
    merged = mounter(mounts)
    assert not (merged / "f").exists()
    assert os.listdir(merged / "d") == []


def test_remove_refuses_parents_then_works(snap, mounter):
    snap.prepare("k1")
    snap.commit("l1", "k1")
    snap.prepare("child", "l1")
    with pytest.raises(FailedPrecondition, match="child"):
        snap.remove("l1")
    snap.remove("child")
    snap.remove("l1")
    assert snap.list() == []


def test_errors(snap):
    with pytest.raises(NotFound):
        snap.prepare("k", "no-such-parent")
    snap.prepare("k")
    with pytest.raises(AlreadyExists):
        snap.prepare("k")
    with pytest.raises(FailedPrecondition):
        snap.prepare("k2", "k")                  # an active snapshot cannot be a parent
    with pytest.raises(InvalidArgument):
        snap.prepare("")
    with pytest.raises(NotFound):
        snap.mounts("nope")
    with pytest.raises(NotFound):
        snap.remove("nope")
    with pytest.raises(NotFound):
        snap.commit("x", "nope")
    snap.prepare("k3")
    snap.commit("c3", "k3")
    snap.view("v3", "c3")
    with pytest.raises(FailedPrecondition):
        snap.commit("x", "v3")                   # views cannot be committed


def test_mounts_is_stable(snap):
    first = snap.prepare("k")
    assert snap.mounts("k") == first
