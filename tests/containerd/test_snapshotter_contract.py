"""Contract suite for snapshotters, run against real mounts, once per snapshotter
(overlayfs and native, in a temp directory).

A snapshotter only *describes* mounts; these tests perform them (tracked by the `mounter`
fixture, which unmounts everything even when a test fails) and look at the files.
To check another snapshotter, add its factory to FACTORIES: factory(root) -> Snapshotter.
Only test_whiteout_device_in_upperdir_hides_lower is overlay's alone (it writes overlay's
on-disk whiteout format by hand).
"""

from __future__ import annotations

import os
import stat

import pytest

from labkit.containerd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from labkit.containerd.metadata import MetadataStore
from labkit.containerd.apply import apply_layer
from labkit.containerd.snapshots import NativeSnapshotter, OverlaySnapshotter

from .layers import entry, make_tar

pytestmark = pytest.mark.root


def _overlay(root):
    return OverlaySnapshotter(root, MetadataStore(root / "meta.db"), "test")


def _native(root):
    return NativeSnapshotter(root, MetadataStore(root / "meta.db"), "test")


FACTORIES = {"overlayfs": _overlay, "native": _native}


@pytest.fixture(params=sorted(FACTORIES))
def snap(request, short_tmp):
    return FACTORIES[request.param](short_tmp / "root")


@pytest.fixture
def overlay_snap(short_tmp):
    return _overlay(short_tmp / "root")


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


def test_whiteout_device_in_upperdir_hides_lower(overlay_snap, mounter):
    """The on-disk form INTERFACES §3.3 describes: char 0/0 and the opaque xattr."""
    snap = overlay_snap
    base = mounter(snap.prepare("k1"))
    (base / "f").write_text("x")
    (base / "d").mkdir()
    (base / "d" / "old").write_text("x")
    mounter.release(base)
    snap.commit("l1", "k1")
    mounts = snap.prepare("k2", "l1")
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


def layer_on(snap, mounter, key, parent, tar: bytes) -> None:
    """Unpack a layer into a new committed snapshot `key`, as the puller does."""
    import io
    target = mounter(snap.prepare("extract-" + key, parent))
    apply_layer(io.BytesIO(tar), target)
    mounter.release(target)
    snap.commit(key, "extract-" + key)


def test_layers_with_whiteouts_and_opaque_dirs(snap, mounter):
    layer_on(snap, mounter, "a", "", make_tar(
        entry("etc/", "dir"), entry("etc/passwd", "file", b"root\n"),
        entry("etc/motd", "file", b"hi\n"), entry("opt/", "dir"), entry("opt/old", "file", b"o"),
        entry("opt/sub/", "dir"), entry("opt/sub/deep", "file", b"d")))
    layer_on(snap, mounter, "b", "a", make_tar(
        entry("etc/.wh.motd"), entry("opt/", "dir"), entry("opt/.wh..wh..opq"),
        entry("opt/new", "file", b"n")))
    layer_on(snap, mounter, "c", "b", make_tar(entry("etc/motd", "file", b"back\n")))
    for key, motd, opt in (("a", b"hi\n", ["old", "sub"]), ("b", None, ["new"]),
                           ("c", b"back\n", ["new"])):
        v = mounter(snap.view("v-" + key, key))
        assert (v / "etc/passwd").read_bytes() == b"root\n"
        assert ((v / "etc/motd").read_bytes() if (v / "etc/motd").exists() else None) == motd
        assert sorted(os.listdir(v / "opt")) == opt, key
        # and no whiteout markers ever show
        assert not [n for n in os.listdir(v / "etc") if n.startswith(".wh.")]
    work = mounter(snap.prepare("container", "c"))
    (work / "etc/passwd").unlink()
    (work / "tmp").mkdir()
    assert sorted(os.listdir(work)) == ["etc", "opt", "tmp"]
    v = mounter(snap.view("v-c2", "c"))
    assert (v / "etc/passwd").exists() and not (v / "tmp").exists()   # the parent is untouched


def test_metadata_survives_every_layer(snap, mounter):
    """What a layer sets (owner, mode, times, xattrs, links, devices) is what a container on it
    sees: for native, through a full copy; for overlay, through the lower layers."""
    base = mounter(snap.prepare("k1"))
    f = base / "f"
    f.write_text("data")
    os.chown(f, 1234, 5678)
    os.chmod(f, 0o4751)
    os.utime(f, ns=(1_000_000_000, 2_000_000_000))
    os.setxattr(f, "user.labkit", b"v")
    os.link(f, base / "hard")
    os.symlink("/etc/shadow", base / "abs")       # a symlink to the host's file: never followed
    os.mknod(base / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(base / "fifo")
    (base / "d").mkdir()
    os.utime(base / "d", ns=(3_000_000_000, 4_000_000_000))
    mounter.release(base)
    snap.commit("l1", "k1")
    top = mounter(snap.prepare("k2", "l1"))
    st = os.lstat(top / "f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime_ns) == \
        (1234, 5678, 0o4751, 2_000_000_000)
    assert os.getxattr(top / "f", "user.labkit") == b"v"
    assert os.lstat(top / "hard").st_ino == st.st_ino and st.st_nlink == 2
    assert os.readlink(top / "abs") == "/etc/shadow"
    dev = os.lstat(top / "null")
    assert stat.S_ISCHR(dev.st_mode) and dev.st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(os.lstat(top / "fifo").st_mode)
    assert os.lstat(top / "d").st_mtime_ns == 4_000_000_000


def test_usage_counts_the_snapshot_itself(snap, mounter):
    base = mounter(snap.prepare("k1"))
    (base / "big").write_bytes(b"x" * 1_000_000)
    mounter.release(base)
    snap.commit("l1", "k1")
    assert snap.usage("l1").size >= 1_000_000 and snap.usage("l1").inodes == 2   # fs/ + big
    top = mounter(snap.prepare("k2", "l1"))
    (top / "small").write_bytes(b"y" * 10_000)
    own = snap.usage("k2")
    assert own.inodes >= 2 and own.size >= 10_000
    if isinstance(snap, OverlaySnapshotter):
        assert own.size < 1_000_000      # overlay's upper layer holds only the change
    else:
        assert own.size >= 1_010_000     # native's copy holds everything


def test_walk_filters(snap):
    snap.prepare("k1", labels={"role": "base"})
    snap.commit("l1", "k1")
    snap.prepare("k2", "l1", labels={"role": "work"})
    assert [i.name for i in snap.walk()] == ["l1", "k2"]
    assert [i.name for i in snap.walk(lambda i: i.labels.get("role") == "work")] == ["k2"]
    assert [i.name for i in snap.walk(lambda i: i.parent == "l1")] == ["k2"]
