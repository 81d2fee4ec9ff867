"""The Diff service: Apply a layer to mounts, Diff two mount sets into a layer, round trip.

In process (labkit.containerd.diff.Differ over a real content store and real snapshots, with
each snapshotter): a base layer is applied to a snapshot; a container-like snapshot on top
adds, changes and deletes files, empties and refills a directory, changes only a mode;
Diff(base, changed) gives a gzip tar layer with exactly those changes (whiteouts, an opaque
directory), and applying that layer to the base gives a tree identical to the changed one.
Over gRPC: Diff.Apply / Diff.Diff, the blob's containerd.io/uncompressed label, the lease.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path

import grpc
import pytest

from labkit.containerd.client import LEASE_KEY, Client, pb
from labkit.containerd.content import LocalContentStore
from labkit.containerd.diff import Descriptor, Differ
from labkit.containerd.errors import InvalidArgument
from labkit.containerd.metadata import MetadataStore
from labkit.containerd.snapshots import NativeSnapshotter, OverlaySnapshotter
from labkit.distribution import mediatypes

from .layers import entry, gz, make_tar, sha
from .test_grpc_e2e import Daemon

pytestmark = pytest.mark.root

BASE = make_tar(
    entry("etc/", "dir"), entry("etc/passwd", "file", b"root:x:0:0\n"),
    entry("etc/motd", "file", b"welcome\n"), entry("etc/mode", "file", b"m", mode=0o600),
    entry("opt/", "dir"), entry("opt/old", "file", b"old"), entry("opt/sub/", "dir"),
    entry("opt/sub/deep", "file", b"deep"),
    entry("var/", "dir"), entry("var/cache/", "dir"), entry("var/cache/x", "file", b"x"),
    entry("var/log/", "dir"),
    entry("bin/", "dir"), entry("bin/sh", "file", b"#!sh", mode=0o755),
    entry("bin/ln", "symlink", link="sh"), entry("dev/", "dir"),
    entry("dev/null", "char", dev=(1, 3), mode=0o666),
    entry("etc/attr", "file", b"a", xattrs={"user.k": "v"}))


def fingerprint(root: Path) -> dict[str, tuple]:
    """What a container sees: type, mode, owner, content, link, device, xattrs, mtime (s)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = None
            if stat.S_ISREG(st.st_mode):
                data = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p)
            xattrs = {n: os.getxattr(p, n, follow_symlinks=False)
                      for n in os.listxattr(p, follow_symlinks=False)
                      if not n.startswith("trusted.overlay.")}
            mtime = None if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns // 10**9
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, data,
                                             st.st_rdev, sorted(xattrs.items()), mtime)
    return out


@pytest.fixture(params=["overlayfs", "native"])
def env(request, short_tmp, mounter):
    root = short_tmp / "root"
    meta = MetadataStore(root / "meta.db")
    cls = OverlaySnapshotter if request.param == "overlayfs" else NativeSnapshotter
    content = LocalContentStore(root)
    return cls(root, meta, "t"), content, Differ(content, short_tmp / "tmpmounts"), mounter


def put(content, blob: bytes) -> Descriptor:
    content.write_bytes(blob)
    return Descriptor(mediatypes.OCI_LAYER_GZIP, sha(blob), len(blob))


def members(content, digest: str) -> dict[str, tarfile.TarInfo]:
    with content.open(digest) as f, tarfile.open(fileobj=gzip.GzipFile(fileobj=f),
                                                  mode="r|") as tar:
        return {m.name.rstrip("/"): m for m in tar}


def test_apply_then_diff_round_trips(env):
    snap, content, differ, mounter = env
    applied = differ.apply(put(content, gz(BASE)), snap.prepare("x-base"))
    assert (applied.media_type, applied.digest, applied.size) == \
        (mediatypes.OCI_LAYER_TAR, sha(BASE), len(BASE))
    snap.commit("base", "x-base")

    work = mounter(snap.prepare("work", "base"))
    (work / "etc/new").write_text("added\n")                 # added
    (work / "etc/passwd").write_text("root:x:0:0\nme:x:1000:1000\n")   # changed
    (work / "etc/motd").unlink()                               # deleted -> whiteout
    shutil.rmtree(work / "var/cache")                          # a deleted directory
    shutil.rmtree(work / "opt/sub")                            # everything in opt goes ...
    (work / "opt/old").unlink()
    (work / "opt/fresh").write_text("fresh")                   # ... and new things come: opaque
    os.chmod(work / "etc/mode", 0o640)                         # only the mode changes
    os.link(work / "etc/new", work / "etc/new-link")           # a hardlink within the layer
    mounter.release(work)

    layer = differ.diff(snap.view("v-base", "base"), snap.mounts("work"))
    assert layer.media_type == mediatypes.OCI_LAYER_GZIP
    with content.open(layer.digest) as f:
        raw = f.read()
    assert sha(raw) == layer.digest and len(raw) == layer.size
    assert layer.diff_id == sha(gzip.decompress(raw))
    m = members(content, layer.digest)
    assert {"etc/.wh.motd", "var/.wh.cache", "opt/.wh..wh..opq", "opt/fresh", "etc/new",
            "etc/passwd", "etc/mode"} <= set(m)
    assert m["etc/new-link"].islnk() and m["etc/new-link"].linkname in ("etc/new",)
    unchanged = {"etc/attr", "bin/sh", "bin/ln", "dev/null", "opt/old", "opt/sub/deep",
                 "var/cache/x", "etc/motd"}
    assert not unchanged & set(m), unchanged & set(m)
    assert not [n for n in m if n.startswith("opt/.wh.") and n != "opt/.wh..wh..opq"]

    # Applying the layer to the base gives what the container saw.
    snap.commit("changed", "work")
    differ.apply(put(content, raw), snap.prepare("x-replay", "base"))
    snap.commit("replayed", "x-replay")
    want = fingerprint(mounter(snap.view("v-changed", "changed")))
    got = fingerprint(mounter(snap.view("v-replayed", "replayed")))
    assert got == want
    assert "etc/motd" not in got and "var/cache" not in got
    assert sorted(p for p in got if p.startswith("opt/")) == ["opt/fresh"]


def test_diff_against_nothing_is_the_whole_tree_and_plain_tar(env):
    snap, content, differ, mounter = env
    differ.apply(put(content, gz(BASE)), snap.prepare("x-base"))
    snap.commit("base", "x-base")
    layer = differ.diff([], snap.view("v", "base"), media_type=mediatypes.OCI_LAYER_TAR)
    assert layer.diff_id == layer.digest
    with content.open(layer.digest) as f, tarfile.open(fileobj=f) as tar:
        names = {m.name.rstrip("/") for m in tar}
        dev = tar.getmember("dev/null")
        attr = tar.getmember("etc/attr")
    assert {"etc/passwd", "bin/ln", "dev/null", "opt/sub/deep"} <= names
    assert not [n for n in names if ".wh." in n]
    assert dev.ischr() and (dev.devmajor, dev.devminor) == (1, 3)
    assert attr.pax_headers["SCHILY.xattr.user.k"] == "v"


def test_apply_and_diff_errors(env):
    snap, content, differ, mounter = env
    with pytest.raises(InvalidArgument):
        differ.apply(Descriptor(mediatypes.OCI_CONFIG, sha(b"x"), 1), snap.prepare("a"))
    with pytest.raises(InvalidArgument):
        differ.diff([], snap.mounts("a"), media_type="application/x-zip")
    bad = b"not a tar at all" * 100
    with pytest.raises(InvalidArgument):
        differ.apply(put(content, bad), snap.mounts("a"))
    assert content.ingest_statuses() == []     # a failed diff leaves no ingest


# ---------------------------------------------------------------- over gRPC


@pytest.fixture(scope="module")
def client():
    d = Daemon(Path(tempfile.mkdtemp(prefix="lkd-", dir="/tmp")))
    d.start()
    try:
        with Client(d.sock, "lkdiff") as c:
            c.wait_ready(10)
            yield c
    finally:
        d.stop()
        from labkit.containerd import mount as mountlib
        from labkit.lab.reset import mounts_under
        for point in mounts_under([d.base]):
            mountlib.unmount_all(point)
        shutil.rmtree(d.base, ignore_errors=True)


def write_blob(c, blob: bytes, md) -> str:
    ref = "up-" + sha(blob)[7:19]
    answers = c.content.Write(iter([pb.WriteContentRequest(
        action=pb.COMMIT, ref=ref, data=blob, expected=sha(blob))]), metadata=md)
    return [a.digest for a in answers][-1]


def test_diff_service_over_grpc(client):
    c, md = client, [(LEASE_KEY, "build")]
    c.leases.Create(pb.CreateLeaseRequest(id="build"))
    try:
        blob = gz(BASE)
        digest = write_blob(c, blob, md)
        mounts = c.snapshots.Prepare(pb.PrepareSnapshotRequest(key="x"), metadata=md).mounts
        applied = c.diff.Apply(pb.ApplyRequest(diff=pb.Descriptor(
            media_type=mediatypes.OCI_LAYER_GZIP, digest=digest, size=len(blob)),
            mounts=mounts)).applied
        assert (applied.digest, applied.size) == (sha(BASE), len(BASE))
        c.snapshots.Commit(pb.CommitSnapshotRequest(name="base", key="x"), metadata=md)
        c.snapshots.Prepare(pb.PrepareSnapshotRequest(key="w", parent="base"), metadata=md)
        # the whole base as a layer, labelled, in the lease
        view = c.snapshots.View(pb.ViewSnapshotRequest(key="v", parent="base"), metadata=md)
        d = c.diff.Diff(pb.DiffRequest(left=[], right=view.mounts, labels={"by": "test"}),
                        metadata=md).diff
        info = c.content.Info(pb.InfoRequest(digest=d.digest)).info
        assert info.labels["containerd.io/uncompressed"] == sha(
            gzip.decompress(client.read_content(d.digest)))
        assert info.labels["by"] == "test"
        held = {(r.type, r.id) for r in c.leases.ListResources(
            pb.ListResourcesRequest(id="build")).resources}
        assert ("content", d.digest) in held and ("snapshots/overlayfs", "base") in held
        with pytest.raises(grpc.RpcError) as e:
            c.diff.Apply(pb.ApplyRequest(diff=pb.Descriptor(
                media_type=mediatypes.OCI_LAYER_GZIP, digest=sha(b"nothing"), size=7),
                mounts=mounts))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        for key in ("v", "w", "x"):
            try:
                c.snapshots.Remove(pb.RemoveSnapshotRequest(key=key))
            except grpc.RpcError:
                pass
        c.leases.Delete(pb.DeleteLeaseRequest(id="build", sync=True))
    assert list(c.content.List(pb.ListContentRequest()).info) == []
    assert list(c.snapshots.List(pb.ListSnapshotsRequest()).info) == []
